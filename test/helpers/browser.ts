import { chromium, type Browser } from 'playwright-core';

/**
 * Headless Chromium driven by playwright-core: Debian's `chromium` (scripts/install-chromium.sh,
 * which `npm test` runs), or the binary RELAY_TEST_CHROMIUM names. A missing browser fails the
 * test that asked for it; it is never skipped.
 */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: process.env.RELAY_TEST_CHROMIUM || '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] });
}
