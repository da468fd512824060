import { Verified, VERIFIED_MS } from '../../lib/verified';

/** The brief memory of credentials found valid (lib/verified.ts) that API keys, JWTs and host tokens share. */
test('a credential found valid is taken as valid for at most VERIFIED_MS, and never past its own expiry', () => {
  const v = new Verified<string>();
  v.remember('a', 'key-a', v.mark(), 0);
  expect(v.get('a', VERIFIED_MS - 1)).toBe('key-a');
  expect(v.get('a', VERIFIED_MS)).toBeUndefined();
  v.remember('b', 'jwt-b', v.mark(), 0, 300);
  expect(v.get('b', 299)).toBe('jwt-b');
  expect(v.get('b', 300)).toBeUndefined();
});

test('a revocation drops what matches at once, and a check it overtook is not kept', () => {
  const v = new Verified<string>();
  v.remember('a', 'key-a', v.mark(), 0);
  v.remember('b', 'key-b', v.mark(), 0);
  const begun = v.mark(); // a check of c starts reading
  v.forget((value) => value === 'key-a');
  expect(v.get('a', 1)).toBeUndefined();
  expect(v.get('b', 1)).toBe('key-b');
  v.remember('c', 'key-c', begun, 1); // it read c before the revocation: not kept
  expect(v.get('c', 2)).toBeUndefined();
});

test('it holds at most its bound, the oldest going first', () => {
  const v = new Verified<number>(2);
  for (const k of [1, 2, 3]) v.remember(`h${k}`, k, v.mark(), 0);
  expect([1, 2, 3].map((k) => v.get(`h${k}`, 1))).toEqual([undefined, 2, 3]);
});
