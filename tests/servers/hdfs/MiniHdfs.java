import java.io.BufferedReader;
import java.io.File;
import java.io.InputStreamReader;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hdfs.HdfsConfiguration;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.apache.hadoop.hdfs.MiniDFSNNTopology;
import org.apache.hadoop.hdfs.server.datanode.DataNode;
import org.apache.hadoop.security.UserGroupInformation;

/**
 * A NameNode (or an HA pair) and one DataNode in one JVM, for Cairn's tests and benchmarks.
 *
 * <p>Usage: {@code java MiniHdfs <base dir> [--ha] [--ls-limit N]}. Everything binds to
 * 127.0.0.1 on free ports, WebHDFS is on and permissions are checked (the superuser is whoever
 * HADOOP_USER_NAME names). Once the cluster is up, one JSON line on stdout gives the WebHDFS
 * addresses. Then stdin takes commands, one per line: {@code failover} makes the standby
 * NameNode active (HA only) and answers another JSON line. End of stdin or SIGTERM stops it.
 */
public final class MiniHdfs {
    private static MiniDFSCluster cluster;
    private static int active = 0;

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: MiniHdfs <base dir> [--ha] [--ls-limit N]");
            System.exit(2);
        }
        String baseDir = args[0];
        boolean ha = false;
        int lsLimit = 1000;
        for (int i = 1; i < args.length; i++) {
            if (args[i].equals("--ha")) {
                ha = true;
            } else if (args[i].equals("--ls-limit") && i + 1 < args.length) {
                lsLimit = Integer.parseInt(args[++i]);
            } else {
                System.err.println("unknown argument: " + args[i]);
                System.exit(2);
            }
        }

        Configuration conf = new HdfsConfiguration();
        conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, new File(baseDir).getAbsolutePath());
        conf.setBoolean("dfs.webhdfs.enabled", true);
        conf.setBoolean("dfs.permissions.enabled", true);
        conf.setBoolean("dfs.namenode.acls.enabled", true);
        // Entries per LISTSTATUS_BATCH answer.
        conf.setInt("dfs.ls.limit", lsLimit);
        // One DataNode: one replica, and no waiting for more.
        conf.setInt("dfs.replication", 1);
        conf.setInt("dfs.namenode.safemode.min.datanodes", 1);
        // The DataNode's address in WebHDFS redirects: loopback, never the machine's name.
        conf.set("dfs.datanode.hostname", "127.0.0.1");
        conf.set("dfs.datanode.address", "127.0.0.1:0");
        conf.set("dfs.datanode.http.address", "127.0.0.1:0");
        conf.set("dfs.datanode.ipc.address", "127.0.0.1:0");
        // Small blocks and fast heartbeats keep a test cluster light and quick to settle.
        conf.setLong("dfs.blocksize", 8L * 1024 * 1024);
        conf.setLong("dfs.heartbeat.interval", 1);
        conf.setBoolean("dfs.namenode.name.dir.restore", false);
        // Closing a file must not wait for the DataNode's block report (a 400 ms poll per
        // file otherwise): a committed last block is enough on a one-replica cluster.
        conf.setInt("dfs.namenode.file.close.num-committed-allowed", 1);
        conf.setInt("dfs.client.block.write.locateFollowingBlock.initial.delay.ms", 20);

        MiniDFSCluster.Builder builder = new MiniDFSCluster.Builder(conf)
                .numDataNodes(1)
                .format(true)
                .checkDataNodeHostConfig(true);
        if (ha) {
            builder.nnTopology(MiniDFSNNTopology.simpleHATopology());
        } else {
            builder.nameNodePort(0).nameNodeHttpPort(0);
        }
        cluster = builder.build();
        if (ha) {
            cluster.transitionToActive(0);
        }
        cluster.waitActive();
        cluster.waitClusterUp();

        Runtime.getRuntime().addShutdownHook(new Thread(MiniHdfs::stop));
        System.out.println(describe());
        System.out.flush();

        BufferedReader in = new BufferedReader(
                new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            String command = line.trim();
            if (command.equals("failover") && ha) {
                int next = 1 - active;
                cluster.transitionToStandby(active);
                cluster.transitionToActive(next);
                active = next;
                System.out.println(describe());
            } else if (!command.isEmpty()) {
                System.out.println("{\"error\": \"unknown command\"}");
            }
            System.out.flush();
        }
        stop();
        System.exit(0);
    }

    private static synchronized void stop() {
        if (cluster != null) {
            MiniDFSCluster running = cluster;
            cluster = null;
            running.shutdown(true);
        }
    }

    private static String describe() throws java.io.IOException {
        List<String> namenodes = new ArrayList<>();
        for (int i = 0; i < cluster.getNumNameNodes(); i++) {
            InetSocketAddress http = cluster.getNameNode(i).getHttpAddress();
            namenodes.add("\"http://127.0.0.1:" + http.getPort() + "\"");
        }
        DataNode dn = cluster.getDataNodes().get(0);
        return "{\"namenodes\": [" + String.join(", ", namenodes) + "], \"active\": " + active
                + ", \"datanode_http\": \"http://127.0.0.1:" + dn.getInfoPort() + "\""
                + ", \"superuser\": \"" + UserGroupInformation.getCurrentUser().getShortUserName() + "\"}";
    }

    private MiniHdfs() {
    }
}
