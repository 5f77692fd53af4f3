// Sends every kind of Segment call, and a batch of 1,000, through
// @segment/analytics-node to HOST with WRITE_KEY (TestSegmentNodeSDK).
import { Analytics } from '@segment/analytics-node'

const { HOST, WRITE_KEY, RUN } = process.env
const analytics = new Analytics({
  writeKey: WRITE_KEY, host: HOST, maxEventsInBatch: 100, flushInterval: 100,
  maxRetries: 10, httpRequestTimeout: 10000,
})
const errors = []
analytics.on('error', (err) => errors.push(String(err?.reason ?? err?.message ?? err)))

const past = new Date(Date.now() - 3600_000)
analytics.track({ userId: 'n1', event: 'Node Track', messageId: `${RUN}-track`, properties: { a: 1 }, timestamp: past })
analytics.identify({ userId: 'n1', messageId: `${RUN}-identify`, traits: { plan: 'pro' } })
analytics.page({ anonymousId: 'anon-1', name: 'Home', messageId: `${RUN}-page`, properties: { path: '/' } })
analytics.screen({ userId: 'n1', name: 'Settings', messageId: `${RUN}-screen` })
analytics.group({ userId: 'n1', groupId: 'g1', messageId: `${RUN}-group`, traits: { name: 'Acme' } })
analytics.alias({ userId: 'n1', previousId: 'anon-1', messageId: `${RUN}-alias` })
for (let i = 0; i < 1000; i++) {
  analytics.track({ userId: `u${i % 50}`, event: 'Bulk', messageId: `${RUN}-bulk-${i}`, properties: { i } })
}
await analytics.closeAndFlush({ timeout: 60000 })
console.log(JSON.stringify({ past: past.toISOString(), errors }))
process.exit(errors.length ? 1 : 0)
