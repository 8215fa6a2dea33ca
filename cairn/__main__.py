from cairn.cli import app

app(prog_name="cairn")
