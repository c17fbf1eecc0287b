import autocannon from 'autocannon';
const r = await autocannon({ url: process.argv[2], connections: 50, duration: 8, method: 'POST',
  headers: { 'content-type': 'application/json', authorization: 'Bearer x' },
  body: JSON.stringify({ model: 'mock-small', messages: [{ role: 'user', content: 'hi' }] }) });
console.log(process.argv[2], r.requests.average, 'non2xx', r.non2xx, 'p50', r.latency.p50);
