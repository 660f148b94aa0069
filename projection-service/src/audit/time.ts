/**
 * `Date.prototype.toISOString`, about ten times faster: every audit row writes two timestamps
 * into its canonical form and two into its COPY line (or export line), and V8's toISOString
 * costs ~0.45 µs a call (measured: 1.9 µs of a rebuild's ~30 µs per event). The date part is
 * computed once per day with Hinnant's days-to-civil arithmetic; the time part from lookup
 * tables. Same text as toISOString for years 0000–9999; outside them (±YYYYYY) and for invalid
 * dates (RangeError) toISOString itself answers. A unit test holds the two equal.
 */
export function isoTime(date: Date): string {
  const t = date.getTime();
  if (!(t >= MIN_MS && t < MAX_MS)) return date.toISOString();
  const day = Math.floor(t / DAY_MS);
  if (day !== cachedDay) {
    cachedPrefix = datePrefix(day);
    cachedDay = day;
  }
  let ms = t - day * DAY_MS;
  const h = Math.floor(ms / 3_600_000);
  ms -= h * 3_600_000;
  const m = Math.floor(ms / 60_000);
  ms -= m * 60_000;
  const s = Math.floor(ms / 1000);
  return `${cachedPrefix}${PAD2[h]}:${PAD2[m]}:${PAD2[s]}.${PAD3[ms - s * 1000]}Z`;
}

const DAY_MS = 86_400_000;
/** 0000-01-01T00:00:00.000Z and 10000-01-01T00:00:00.000Z. */
const MIN_MS = -62_167_219_200_000;
const MAX_MS = 253_402_300_800_000;
const PAD2 = Array.from({ length: 60 }, (_, i) => String(i).padStart(2, '0'));
const PAD3 = Array.from({ length: 1000 }, (_, i) => String(i).padStart(3, '0'));

// Rows of a batch mostly fall on the same day: one cached date prefix covers them.
let cachedDay = Number.NaN;
let cachedPrefix = '';

/** `YYYY-MM-DDT` of a day number (days since 1970-01-01), proleptic Gregorian. */
function datePrefix(days: number): string {
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  const y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  return `${String(y).padStart(4, '0')}-${PAD2[m]}-${PAD2[d]}T`;
}
