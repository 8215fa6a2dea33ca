from cairn.main import main

main()
