// A `command` processor for tests/archastro_sdk.rs: answers which turn it
// is, its input, and the earlier turns' inputs it was given, so the suite
// can see that a session's follow-up turn carries its history.
let text = '';
process.stdin.on('data', (chunk) => { text += chunk; });
process.stdin.on('end', () => {
  const run = JSON.parse(text);
  const earlier = run.turns.map((turn) => turn.input).join(' | ');
  process.stdout.write(`turn ${run.turns.length + 1}: ${run.input}; earlier: ${earlier}`);
});
