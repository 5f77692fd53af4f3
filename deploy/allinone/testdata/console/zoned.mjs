// The console's time-zone arithmetic (zoned: a wall-clock time in a zone
// to an instant) around DST changes, half-hour zones and UTC (TestConsole).
const src = (await import('node:fs')).readFileSync(process.env.CONSOLE_JS, 'utf8')
const body = src.slice(src.indexOf('// wall is the wall-clock'), src.indexOf('async function reportsTab'))
const { wall, zoned } = new Function(body + '; return { wall, zoned }')()
for (const [v, tz, want] of [
  ['2025-03-09T02:30', 'America/New_York', '2025-03-09T07:30:00.000Z'], // gap: offset before (EST) → 03:30 EDT
  ['2025-11-02T01:30', 'America/New_York', '2025-11-02T05:30:00.000Z'], // twice: the earlier (EDT)
  ['2025-10-05T02:15', 'Australia/Lord_Howe', '2025-10-04T15:45:00.000Z'], // gap: the offset before (+10:30), as in New York
  ['2026-01-01T00:00', 'Asia/Kolkata', '2025-12-31T18:30:00.000Z'],
  ['2026-07-01T12:00', 'UTC', '2026-07-01T12:00:00.000Z'],
]) {
  const got = zoned(v, tz).toISOString()
  if (got !== want) { console.log('BAD', v, tz, got, 'want', want); process.exitCode = 1 }
}
