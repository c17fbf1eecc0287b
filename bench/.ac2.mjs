import autocannon from 'autocannon';
import { readFileSync } from 'node:fs';
const [url, pid] = process.argv.slice(2);
const cpu = () => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return (Number(f[11]) + Number(f[12])) * 10000; };
const opts = { url, connections: 50, method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer ' + (process.env.KEY || 'x') }, body: JSON.stringify({ model: 'mock-small', messages: [{ role: 'user', content: 'hi' }] }) };
await autocannon({ ...opts, amount: 5000 });
const c0 = cpu(); const r = await autocannon({ ...opts, amount: 30000 }); const c1 = cpu();
console.log(`rps ${Math.round(r.requests.average)} cpu_us/req ${((c1 - c0) / 30000).toFixed(1)} non2xx ${r.non2xx}`);
