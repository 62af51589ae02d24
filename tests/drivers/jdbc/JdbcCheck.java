// PostgreSQL JDBC through tenantgate (run by tests/drivers.rs as
// `java -cp /usr/share/java/postgresql.jar tests/drivers/jdbc/JdbcCheck.java`).
//
// Checks: SCRAM login of tenant-bound users (and 28P01 for a wrong
// password), tenant isolation, INSERT without tenant_id (the Rust test
// verifies the stored tenant directly on the cluster), a refusal's SQLSTATE,
// server-side prepared statements (prepareThreshold=1: named from the first
// execution) reused over many transactions by more concurrent connections
// than the pool has server connections, a batch insert (addBatch /
// executeBatch), an error inside a transaction followed by rollback and
// reuse of the same PreparedStatement (also one whose first execution
// failed), and cancel of pg_sleep by
// setQueryTimeout and by Statement.cancel from another thread (57014, the
// connection still usable).
//
// Connection settings come from TG_* environment variables. Prints one
// `ok <check>` or `FAIL <check> <detail>` line per check; exits 1 if any failed.

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

public class JdbcCheck {
    static final String DRIVER = env("TG_DRIVER");
    static final int CLIENTS = Integer.parseInt(env("TG_CLIENTS"));
    static final int TXNS = Integer.parseInt(env("TG_TXNS"));
    static final String URL = "jdbc:postgresql://" + env("TG_HOST") + ":" + env("TG_PORT") + "/"
            + env("TG_DB") + "?prepareThreshold=1&connectTimeout=10&sslmode=disable";
    static final String[] USER = {env("TG_USER_A"), env("TG_USER_B")};
    static final String[] PASSWORD = {env("TG_PASSWORD_A"), env("TG_PASSWORD_B")};
    static final String[] TENANT = {env("TG_TENANT_A"), env("TG_TENANT_B")};
    // Rows the test put in `items` for each tenant (ids 1..n, note '<tenant>-<id>').
    static final int[] ITEMS = {Integer.parseInt(env("TG_ITEMS_A")), Integer.parseInt(env("TG_ITEMS_B"))};

    static int failures = 0;

    interface Check {
        void run() throws Exception;
    }

    static String env(String name) {
        String v = System.getenv(name);
        if (v == null) throw new IllegalStateException("environment variable " + name + " is not set");
        return v;
    }

    static void expect(boolean cond, String what) {
        if (!cond) throw new AssertionError(what);
    }

    static String describe(Throwable e) {
        String state = e instanceof SQLException ? ((SQLException) e).getSQLState() : null;
        return e.getClass().getSimpleName() + ": " + e.getMessage() + " [" + state + "]";
    }

    static Connection connect(int who) throws SQLException {
        return connect(who, PASSWORD[who]);
    }

    static Connection connect(int who, String password) throws SQLException {
        Properties p = new Properties();
        p.setProperty("user", USER[who]);
        p.setProperty("password", password);
        return DriverManager.getConnection(URL, p);
    }

    static long longValue(PreparedStatement ps) throws SQLException {
        try (ResultSet rs = ps.executeQuery()) {
            expect(rs.next(), "no row");
            long v = rs.getLong(1);
            expect(!rs.next(), "more than one row");
            return v;
        }
    }

    static String stringValue(PreparedStatement ps) throws SQLException {
        try (ResultSet rs = ps.executeQuery()) {
            expect(rs.next(), "no row");
            String v = rs.getString(1);
            expect(!rs.next(), "more than one row");
            return v;
        }
    }

    static long scalar(Connection c, String sql) throws SQLException {
        try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(sql)) {
            expect(rs.next(), "no row for " + sql);
            return rs.getLong(1);
        }
    }

    static void checkLogin() throws Exception {
        for (int who = 0; who < 2; who++) {
            try (Connection c = connect(who)) {
                expect(scalar(c, "SELECT 1") == 1, "SELECT 1");
            }
        }
    }

    static void checkBadPassword() throws Exception {
        try (Connection c = connect(0, "wrong")) {
            throw new AssertionError("a wrong password was accepted");
        } catch (SQLException e) {
            expect("28P01".equals(e.getSQLState()), "got " + describe(e));
        }
    }

    static void checkIsolation() throws Exception {
        for (int who = 0; who < 2; who++) {
            String tenant = TENANT[who];
            String other = TENANT[1 - who];
            try (Connection c = connect(who)) {
                StringBuilder got = new StringBuilder();
                StringBuilder want = new StringBuilder();
                try (Statement st = c.createStatement();
                     ResultSet rs = st.executeQuery("SELECT tenant_id, id, note FROM items ORDER BY id")) {
                    while (rs.next()) got.append(rs.getString(1)).append(',').append(rs.getInt(2))
                            .append(',').append(rs.getString(3)).append(';');
                }
                for (int i = 1; i <= ITEMS[who]; i++) want.append(tenant).append(',').append(i)
                        .append(',').append(tenant).append('-').append(i).append(';');
                expect(got.toString().equals(want.toString()), tenant + " saw " + got + ", wanted " + want);
                try (PreparedStatement ps = c.prepareStatement("SELECT count(*) FROM items WHERE tenant_id = ?")) {
                    ps.setString(1, other);
                    long n = longValue(ps);
                    expect(n == 0, tenant + " counted " + n + " rows of " + other);
                }
                try (PreparedStatement ps = c.prepareStatement("SELECT note FROM items WHERE id = ?")) {
                    ps.setInt(1, 1);
                    String note = stringValue(ps);
                    expect((tenant + "-1").equals(note), tenant + " read " + note + " for id 1");
                }
            }
        }
    }

    static void checkInsertDefaultTenant() throws Exception {
        for (int who = 0; who < 2; who++) {
            try (Connection c = connect(who);
                 PreparedStatement ps = c.prepareStatement(
                         "INSERT INTO events (driver, note, n) VALUES (?, ?, 0) RETURNING tenant_id")) {
                ps.setString(1, DRIVER);
                ps.setString(2, "default-tenant-" + TENANT[who]);
                String t = stringValue(ps);
                expect(TENANT[who].equals(t), "RETURNING tenant_id gave " + t);
            }
        }
    }

    static void checkRefusal() throws Exception {
        try (Connection c = connect(0)) {
            try (Statement st = c.createStatement()) {
                st.executeQuery("SELECT * FROM pg_stats").close();
                throw new AssertionError("pg_stats was readable");
            } catch (SQLException e) {
                expect("42501".equals(e.getSQLState()), "got " + describe(e));
            }
            expect(scalar(c, "SELECT 2") == 2, "connection unusable after the refusal");
        }
    }

    static void checkPreparedConcurrent() throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(CLIENTS);
        CountDownLatch connected = new CountDownLatch(CLIENTS);
        List<Future<Void>> results = new ArrayList<>();
        for (int k = 0; k < CLIENTS; k++) {
            final int client = k;
            final int who = k % 2;
            Callable<Void> task = () -> {
                String tenant = TENANT[who];
                String note = "loop-" + client;
                try (Connection c = connect(who)) {
                    connected.countDown();
                    expect(connected.await(30, TimeUnit.SECONDS), "clients did not all connect");
                    c.setAutoCommit(false);
                    try (PreparedStatement item = c.prepareStatement("SELECT note FROM items WHERE id = ?");
                         PreparedStatement insert = c.prepareStatement(
                                 "INSERT INTO events (driver, note, n) VALUES (?, ?, ?)");
                         PreparedStatement count = c.prepareStatement(
                                 "SELECT count(*) FROM events WHERE driver = ? AND note = ?")) {
                        for (int i = 0; i < TXNS; i++) {
                            int id = i % ITEMS[who] + 1;
                            item.setInt(1, id);
                            String got = stringValue(item);
                            expect((tenant + "-" + id).equals(got), "client " + client + " txn " + i + ": read " + got);
                            insert.setString(1, DRIVER);
                            insert.setString(2, note);
                            insert.setInt(3, i);
                            expect(insert.executeUpdate() == 1, "insert count");
                            count.setString(1, DRIVER);
                            count.setString(2, note);
                            long n = longValue(count);
                            expect(n == i + 1, "client " + client + " txn " + i + ": count " + n + ", wanted " + (i + 1));
                            c.commit();
                        }
                    }
                } catch (Exception | AssertionError e) {
                    connected.countDown();
                    throw new Exception("client " + client + ": " + describe(e), e);
                }
                return null;
            };
            results.add(pool.submit(task));
        }
        pool.shutdown();
        List<String> errors = new ArrayList<>();
        for (Future<Void> f : results) {
            try {
                f.get(45, TimeUnit.SECONDS);
            } catch (Exception e) {
                errors.add(e.getCause() != null ? e.getCause().getMessage() : describe(e));
            }
        }
        expect(errors.isEmpty(), String.join("; ", errors));
    }

    static void checkBatch() throws Exception {
        try (Connection c = connect(1)) {
            c.setAutoCommit(false);
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO events (driver, note, n) VALUES (?, ?, ?)")) {
                for (int round = 0; round < 2; round++) {
                    for (int i = 0; i < 10; i++) {
                        ps.setString(1, DRIVER);
                        ps.setString(2, "many");
                        ps.setInt(3, round * 10 + i);
                        ps.addBatch();
                    }
                    int[] counts = ps.executeBatch();
                    expect(counts.length == 10, "batch of " + counts.length);
                    for (int n : counts) expect(n == 1, "batch row count " + n);
                    c.commit();
                }
            }
            expect(scalar(c, "SELECT count(*) FROM events WHERE note = 'many'") == 20, "count after the batches");
            c.commit();
        }
    }

    static void checkErrorRollback() throws Exception {
        try (Connection c = connect(0);
             PreparedStatement div = c.prepareStatement("SELECT 10 / ?::int");
             PreparedStatement ins = c.prepareStatement(
                     "INSERT INTO events (driver, note, n) VALUES (?, 'rolled-back', 1)")) {
            div.setInt(1, 5);
            expect(longValue(div) == 2, "10/5");
            c.setAutoCommit(false);
            ins.setString(1, DRIVER);
            ins.executeUpdate();
            div.setInt(1, 0);
            try {
                longValue(div);
                throw new AssertionError("10/0 did not fail");
            } catch (SQLException e) {
                expect("22012".equals(e.getSQLState()), "got " + describe(e));
            }
            c.rollback();
            for (int i = 1; i < 4; i++) {
                div.setInt(1, i);
                long v = longValue(div);
                expect(v == 10 / i, "10/" + i + " gave " + v + " after the rollback");
            }
            long n = scalar(c, "SELECT count(*) FROM events WHERE note = 'rolled-back'");
            expect(n == 0, n + " rolled-back rows visible");
            c.commit();
        }
    }

    // A statement's first execution (so its Parse) is in the transaction that
    // fails; then it is used again, in new transactions.
    static void checkErrorFirstUse() throws Exception {
        try (Connection c = connect(0);
             PreparedStatement q = c.prepareStatement("SELECT 100 / ?::int")) {
            c.setAutoCommit(false);
            scalar(c, "SELECT count(*) FROM items");
            q.setInt(1, 0);
            try {
                longValue(q);
                throw new AssertionError("100/0 did not fail");
            } catch (SQLException e) {
                expect("22012".equals(e.getSQLState()), "got " + describe(e));
            }
            c.rollback();
            for (int i = 1; i < 6; i++) {
                q.setInt(1, i);
                long v = longValue(q);
                expect(v == 100 / i, "100/" + i + " gave " + v);
                c.commit();
            }
        }
    }

    static void checkCancel() throws Exception {
        try (Connection c = connect(0)) {
            // setQueryTimeout: the driver sends a CancelRequest after 1 s.
            try (Statement st = c.createStatement()) {
                st.setQueryTimeout(1);
                long t0 = System.nanoTime();
                try {
                    st.executeQuery("SELECT pg_sleep(30)").close();
                    throw new AssertionError("pg_sleep(30) was not cancelled by the query timeout");
                } catch (SQLException e) {
                    expect("57014".equals(e.getSQLState()), "query timeout gave " + describe(e));
                }
                double s = (System.nanoTime() - t0) / 1e9;
                expect(s < 10, "query timeout took " + s + " s");
            }
            expect(scalar(c, "SELECT 3") == 3, "connection unusable after the query timeout");
            // Statement.cancel from another thread.
            try (Statement st = c.createStatement()) {
                Thread canceller = new Thread(() -> {
                    try {
                        Thread.sleep(500);
                        st.cancel();
                    } catch (Exception e) {
                        System.out.println("info cancel thread: " + describe(e));
                    }
                });
                long t0 = System.nanoTime();
                canceller.start();
                try {
                    st.executeQuery("SELECT pg_sleep(30)").close();
                    throw new AssertionError("pg_sleep(30) was not cancelled by Statement.cancel");
                } catch (SQLException e) {
                    expect("57014".equals(e.getSQLState()), "Statement.cancel gave " + describe(e));
                }
                canceller.join();
                double s = (System.nanoTime() - t0) / 1e9;
                expect(s < 10, "Statement.cancel took " + s + " s");
            }
            expect(scalar(c, "SELECT 4") == 4, "connection unusable after Statement.cancel");
        }
    }

    static void run(String name, Check check) {
        try {
            check.run();
            System.out.println("ok " + name);
        } catch (Throwable e) {
            failures++;
            System.out.println(("FAIL " + name + " " + describe(e)).replace('\n', ' '));
            e.printStackTrace();
        }
        System.out.flush();
    }

    public static void main(String[] args) {
        System.out.println("info jdbc " + org.postgresql.util.DriverInfo.DRIVER_VERSION + " java "
                + System.getProperty("java.version"));
        run("login", JdbcCheck::checkLogin);
        run("bad_password", JdbcCheck::checkBadPassword);
        run("isolation", JdbcCheck::checkIsolation);
        run("insert_default_tenant", JdbcCheck::checkInsertDefaultTenant);
        run("refusal", JdbcCheck::checkRefusal);
        run("prepared_concurrent", JdbcCheck::checkPreparedConcurrent);
        run("batch", JdbcCheck::checkBatch);
        run("error_rollback", JdbcCheck::checkErrorRollback);
        run("error_first_use", JdbcCheck::checkErrorFirstUse);
        run("cancel", JdbcCheck::checkCancel);
        System.exit(failures == 0 ? 0 : 1);
    }
}
