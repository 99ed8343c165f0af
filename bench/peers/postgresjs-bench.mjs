// postgresjs-bench.mjs: the postgres.js peer of `pgev-bench --workload fanout --conns 1`.
//
//   node bench/peers/postgresjs-bench.mjs --host DIR_OR_HOST --port P --user U --dbname D
//        [--clients C] [--queries N]
//
// C logical clients (default 1000) share ONE connection (postgres.js `max: 1`, which pipelines
// the queries of concurrent callers automatically) and issue `SELECT $1::int4` back to back
// (a prepared statement, postgres.js's default) until N queries (default 100000) completed.
// Every result is checked. Prints one key=value line as pgev-bench does: queries/s, latency
// percentiles (issue to completion), client CPU and peak RSS.
//
// postgres.js is not a dependency of pgev: bench/compare.sh --peers installs it from npm into a
// scratch directory and runs a copy of this script from there (ES modules resolve `postgres`
// from the script's own directory; NODE_PATH does not apply to them).
import postgres from 'postgres';

function parseArgs(argv) {
    const opts = { host: '', port: 5432, user: '', dbname: '', clients: 1000, queries: 100000 };
    for (let i = 0; i < argv.length; i += 2) {
        const key = argv[i].replace(/^--/, '');
        const value = argv[i + 1];
        if (!(key in opts) || value === undefined) {
            console.error(`postgresjs-bench: unknown or incomplete option ${argv[i]}`);
            process.exit(2);
        }
        opts[key] = typeof opts[key] === 'number' ? Number(value) : value;
    }
    if (!(opts.clients >= 1) || !(opts.queries >= 1)) {
        console.error('postgresjs-bench: --clients and --queries need positive integers');
        process.exit(2);
    }
    return opts;
}

function percentile(sorted, p) {
    if (sorted.length === 0)
        return 0;
    return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

const opts = parseArgs(process.argv.slice(2));
const unixSocket = opts.host.startsWith('/');
const sql = postgres({
    ...(unixSocket ? { path: `${opts.host}/.s.PGSQL.${opts.port}` } : { host: opts.host, port: opts.port }),
    user: opts.user,
    database: opts.dbname,
    max: 1,
    prepare: true,
    onnotice: () => {},
});

await sql`SELECT 1`;    // connected and warm before the clock starts

const latencies = new Float64Array(opts.queries);
let issued = 0;
let done = 0;
let wrong = 0;

async function client() {
    while (issued < opts.queries) {
        const i = issued++;
        const value = i % 1000000;
        const t0 = process.hrtime.bigint();
        const rows = await sql`SELECT ${value}::int4 AS v`;
        latencies[i] = Number(process.hrtime.bigint() - t0) / 1000;
        if (rows.length !== 1 || rows[0].v !== value)
            wrong++;
        done++;
    }
}

const cpu0 = process.cpuUsage();
const t0 = process.hrtime.bigint();
await Promise.all(Array.from({ length: Math.min(opts.clients, opts.queries) }, client));
const wall = Number(process.hrtime.bigint() - t0) / 1e9;
const cpu = process.cpuUsage(cpu0);
await sql.end({ timeout: 5 });

if (wrong) {
    console.error(`postgresjs-bench: ${wrong} wrong results`);
    process.exit(1);
}
const sorted = Array.from(latencies).sort((a, b) => a - b);
const qps = done / wall;
const cpuPct = ((cpu.user + cpu.system) / 1e6 / wall) * 100;
const rssKb = Math.round(process.resourceUsage().maxRSS);
console.log(`postgres.js, node ${process.version}: ${done} queries, ${opts.clients} clients, 1 connection`);
console.log(`workload=peer impl=postgres.js clients=${opts.clients} queries=${done} qps=${qps.toFixed(0)} ` +
    `p50_us=${percentile(sorted, 0.5).toFixed(1)} p99_us=${percentile(sorted, 0.99).toFixed(1)} ` +
    `cpu_pct=${cpuPct.toFixed(1)} rss_kb=${rssKb} errors=0`);
