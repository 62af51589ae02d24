// node-postgres (`pg`) through tenantgate (run by tests/drivers.rs).
//
// Checks: SCRAM login of tenant-bound users (and 28P01 for a wrong
// password), tenant isolation, INSERT without tenant_id (the Rust test
// verifies the stored tenant directly on the cluster), a refusal's SQLSTATE,
// named queries ({name, text, values}: prepared once per client connection,
// by name) reused over many transactions by more concurrent clients than the
// pool has server connections, an error inside a transaction followed by
// ROLLBACK and reuse of the same named query (also one whose first use
// failed), and cancel of pg_sleep
// (Client#cancel, as pg.Client documents for cancelling an active query)
// giving 57014 with the client still usable.
//
// Connection settings come from TG_* environment variables. Prints one
// `ok <check>` or `FAIL <check> <detail>` line per check; exits 1 if any failed.
'use strict'

const pg = require('pg')

const env = process.env
const DRIVER = env.TG_DRIVER
const CLIENTS = Number(env.TG_CLIENTS)
const TXNS = Number(env.TG_TXNS)
const TENANTS = {
  a: { user: env.TG_USER_A, password: env.TG_PASSWORD_A, tenant: env.TG_TENANT_A },
  b: { user: env.TG_USER_B, password: env.TG_PASSWORD_B, tenant: env.TG_TENANT_B },
}
// Rows the test put in `items` for each tenant (ids 1..n, note '<tenant>-<id>').
const ITEMS = { a: Number(env.TG_ITEMS_A), b: Number(env.TG_ITEMS_B) }

let failures = 0

function expect(cond, what) {
  if (!cond) throw new Error(what)
}

function describe(e) {
  return `${e && e.message} [${e && e.code}]`
}

function config(who, password) {
  const t = TENANTS[who]
  return {
    host: env.TG_HOST,
    port: Number(env.TG_PORT),
    database: env.TG_DB,
    user: t.user,
    password: password || t.password,
    connectionTimeoutMillis: 10000,
  }
}

async function connect(who, password) {
  const c = new pg.Client(config(who, password))
  await c.connect()
  return c
}

async function one(c, q) {
  const r = await c.query(q)
  expect(r.rows.length === 1, `${r.rows.length} rows for ${JSON.stringify(q)}`)
  return r.rows[0]
}

async function checkLogin() {
  for (const who of ['a', 'b']) {
    const c = await connect(who)
    try {
      expect((await one(c, 'SELECT 1 AS v')).v === 1, 'SELECT 1')
    } finally {
      await c.end()
    }
  }
}

async function checkBadPassword() {
  let c
  try {
    c = await connect('a', 'wrong')
  } catch (e) {
    expect(e.code === '28P01', `got ${describe(e)}`)
    return
  }
  await c.end()
  throw new Error('a wrong password was accepted')
}

async function checkIsolation() {
  for (const who of ['a', 'b']) {
    const { tenant } = TENANTS[who]
    const other = TENANTS[who === 'a' ? 'b' : 'a'].tenant
    const c = await connect(who)
    try {
      const r = await c.query('SELECT tenant_id, id, note FROM items ORDER BY id')
      const got = JSON.stringify(r.rows.map((x) => [x.tenant_id, x.id, x.note]))
      const want = JSON.stringify(
        Array.from({ length: ITEMS[who] }, (_, i) => [tenant, i + 1, `${tenant}-${i + 1}`])
      )
      expect(got === want, `${tenant} saw ${got}, wanted ${want}`)
      const n = await one(c, {
        text: 'SELECT count(*)::int AS n FROM items WHERE tenant_id = $1',
        values: [other],
      })
      expect(n.n === 0, `${tenant} counted ${n.n} rows of ${other}`)
      const note = await one(c, { text: 'SELECT note FROM items WHERE id = $1', values: [1] })
      expect(note.note === `${tenant}-1`, `${tenant} read ${note.note} for id 1`)
    } finally {
      await c.end()
    }
  }
}

async function checkInsertDefaultTenant() {
  for (const who of ['a', 'b']) {
    const { tenant } = TENANTS[who]
    const c = await connect(who)
    try {
      const r = await one(c, {
        text: 'INSERT INTO events (driver, note, n) VALUES ($1, $2, 0) RETURNING tenant_id',
        values: [DRIVER, `default-tenant-${tenant}`],
      })
      expect(r.tenant_id === tenant, `RETURNING tenant_id gave ${r.tenant_id}`)
    } finally {
      await c.end()
    }
  }
}

async function checkRefusal() {
  const c = await connect('a')
  try {
    let err
    try {
      await c.query('SELECT * FROM pg_stats')
    } catch (e) {
      err = e
    }
    expect(err, 'pg_stats was readable')
    expect(err.code === '42501', `got ${describe(err)}`)
    expect((await one(c, 'SELECT 2 AS v')).v === 2, 'client unusable after the refusal')
  } finally {
    await c.end()
  }
}

async function checkPreparedConcurrent() {
  const clients = []
  for (let k = 0; k < CLIENTS; k++) clients.push(await connect(k % 2 === 0 ? 'a' : 'b'))
  const run = async (k, c) => {
    const who = k % 2 === 0 ? 'a' : 'b'
    const { tenant } = TENANTS[who]
    const note = `loop-${k}`
    for (let i = 0; i < TXNS; i++) {
      await c.query('BEGIN')
      const item = (i % ITEMS[who]) + 1
      const got = await one(c, {
        name: 'item-by-id',
        text: 'SELECT note FROM items WHERE id = $1',
        values: [item],
      })
      expect(got.note === `${tenant}-${item}`, `client ${k} txn ${i}: read ${got.note}`)
      await c.query({
        name: 'insert-event',
        text: 'INSERT INTO events (driver, note, n) VALUES ($1, $2, $3)',
        values: [DRIVER, note, i],
      })
      const n = await one(c, {
        name: 'count-events',
        text: 'SELECT count(*)::int AS n FROM events WHERE driver = $1 AND note = $2',
        values: [DRIVER, note],
      })
      expect(n.n === i + 1, `client ${k} txn ${i}: count ${n.n}, wanted ${i + 1}`)
      await c.query('COMMIT')
    }
  }
  let results
  try {
    results = await Promise.allSettled(clients.map((c, k) => run(k, c)))
  } finally {
    await Promise.all(clients.map((c) => c.end()))
  }
  const errs = results
    .map((r, k) => (r.status === 'rejected' ? `client ${k}: ${describe(r.reason)}` : null))
    .filter((x) => x)
  expect(errs.length === 0, errs.join('; '))
}

async function checkErrorRollback() {
  const c = await connect('a')
  try {
    const div = (v) => ({ name: 'div', text: 'SELECT 10 / $1::int AS q', values: [v] })
    expect((await one(c, div(5))).q === 2, '10/5')
    await c.query('BEGIN')
    await c.query({
      name: 'insert-rolled-back',
      text: "INSERT INTO events (driver, note, n) VALUES ($1, 'rolled-back', 1)",
      values: [DRIVER],
    })
    let err
    try {
      await c.query(div(0))
    } catch (e) {
      err = e
    }
    expect(err && err.code === '22012', `10/0 gave ${describe(err)}`)
    await c.query('ROLLBACK')
    for (let i = 1; i < 4; i++) {
      const r = await one(c, div(i))
      expect(r.q === Math.floor(10 / i), `10/${i} gave ${r.q} after the rollback`)
    }
    const n = await one(c, "SELECT count(*)::int AS n FROM events WHERE note = 'rolled-back'")
    expect(n.n === 0, `${n.n} rolled-back rows visible`)
  } finally {
    await c.end()
  }
}

// A named query's first use (so its Parse) is in the transaction that fails;
// then it is used again, in new transactions.
async function checkErrorFirstUse() {
  const c = await connect('a')
  try {
    const q = (v) => ({ name: 'div100', text: 'SELECT 100 / $1::int AS q', values: [v] })
    await c.query('BEGIN')
    await c.query('SELECT count(*) FROM items')
    let err
    try {
      await c.query(q(0))
    } catch (e) {
      err = e
    }
    expect(err && err.code === '22012', `100/0 gave ${describe(err)}`)
    await c.query('ROLLBACK')
    for (let i = 1; i < 6; i++) {
      await c.query('BEGIN')
      const r = await one(c, q(i))
      expect(r.q === Math.floor(100 / i), `100/${i} gave ${r.q}`)
      await c.query('COMMIT')
    }
  } finally {
    await c.end()
  }
}

async function checkCancel() {
  const c = await connect('a')
  try {
    const q = new pg.Query('SELECT pg_sleep(30)')
    const done = new Promise((resolve) => {
      q.on('error', (e) => resolve(e))
      q.on('end', () => resolve(null))
    })
    const t0 = Date.now()
    c.query(q)
    await new Promise((r) => setTimeout(r, 500))
    new pg.Client(config('a')).cancel(c, q)
    let timer
    const err = await Promise.race([
      done,
      new Promise((r) => {
        timer = setTimeout(() => r(new Error('no answer 20 s after the cancel')), 20000)
      }),
    ])
    clearTimeout(timer)
    const elapsed = (Date.now() - t0) / 1000
    expect(err && err.code === '57014', `pg_sleep(30) gave ${describe(err)}`)
    expect(elapsed < 10, `cancel took ${elapsed} s`)
    expect((await one(c, 'SELECT 3 AS v')).v === 3, 'client unusable after the cancel')
  } finally {
    await c.end()
  }
}

const CHECKS = [
  ['login', checkLogin],
  ['bad_password', checkBadPassword],
  ['isolation', checkIsolation],
  ['insert_default_tenant', checkInsertDefaultTenant],
  ['refusal', checkRefusal],
  ['prepared_concurrent', checkPreparedConcurrent],
  ['error_rollback', checkErrorRollback],
  ['error_first_use', checkErrorFirstUse],
  ['cancel', checkCancel],
]

async function main() {
  console.log(`info pg ${require('pg/package.json').version} node ${process.version}`)
  for (const [name, fn] of CHECKS) {
    try {
      await fn()
      console.log(`ok ${name}`)
    } catch (e) {
      failures++
      console.log(`FAIL ${name} ${describe(e)} ${(e && e.stack) || ''}`.replace(/\n/g, ' | '))
    }
  }
  process.exitCode = failures ? 1 : 0
}

main()
