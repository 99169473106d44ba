// Opens a cnnviz atlas in headless chromium and reports what a reader
// would see broken: console errors and warnings, uncaught page errors,
// requests that fail or leave the site, pictures that do not load, links
// to files that do not exist.
//
//   node tests/browser/check_site.mjs SITE_DIR [--shots DIR] [--chromium PATH]
//
// It visits index.html, the first page of every kind linked from it (the
// kind is the file name up to its first '-' or '.': layer-14.html is a
// "layer"), then the first page of every kind not seen yet linked from
// those (a layer page leads to a "channel"). So new kinds of pages are
// checked without naming them here. One line per page; exit 0 when
// nothing is wrong, 1 when something is, 2 when it could not check.
// --shots DIR saves a full-page screenshot of each kind, DIR/<kind>.png.
// playwright-core drives the system's chromium (tests/browser/package.json;
// it never downloads a browser).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const USAGE = 'usage: node tests/browser/check_site.mjs SITE_DIR [--shots DIR] [--chromium PATH]';
const VIEWPORT = { width: 1000, height: 800 };

function die(msg) {
    console.error(`check_site: ${msg}`);
    process.exit(2);
}

function parseArgs(argv) {
    const a = { site: null, shots: null, chromium: '/usr/bin/chromium' };
    for (let i = 0; i < argv.length; i++) {
        const s = argv[i];
        if (s === '--shots' || s === '--chromium') {
            if (i + 1 >= argv.length)
                die(`${s} needs a value\n${USAGE}`);
            a[s.slice(2)] = argv[++i];
        } else if (s === '-h' || s === '--help') {
            console.log(USAGE);
            process.exit(0);
        } else if (s.startsWith('-')) {
            die(`unknown option ${s}\n${USAGE}`);
        } else if (a.site === null) {
            a.site = s;
        } else {
            die(`one site directory only (got ${a.site} and ${s})\n${USAGE}`);
        }
    }
    if (a.site === null)
        die(`no site directory\n${USAGE}`);
    return a;
}

// "layer-14.html" -> "layer", "index.html" -> "index"
const kindOf = (name) => name.split(/[-.]/)[0];

const args = parseArgs(process.argv.slice(2));
let site;
try {
    site = fs.realpathSync(args.site);
} catch {
    die(`${args.site}: no such directory`);
}
if (!fs.statSync(site).isDirectory())
    die(`${args.site}: not a directory`);
if (!fs.existsSync(path.join(site, 'index.html')))
    die(`${args.site}: no index.html (not an atlas?)`);
if (!fs.existsSync(args.chromium))
    die(`${args.chromium}: no such browser (Debian: apt-get install chromium)`);

let chromium;
try {
    ({ chromium } = await import('playwright-core'));
} catch (e) {
    die(`playwright-core is not installed (npm install --prefix tests/browser --ignore-scripts): ${e.message}`);
}

// The site-relative name of a file: URL, or null when it is outside the
// site (or not a file: URL at all).
function inSite(url) {
    let u;
    try {
        u = new URL(url);
    } catch {
        return null;
    }
    if (u.protocol !== 'file:')
        return null;
    const rel = path.relative(site, fileURLToPath(u));
    return rel === '' || rel.split(path.sep)[0] === '..' || path.isAbsolute(rel) ? null : rel.split(path.sep).join('/');
}

// What the page's events report during one visit (one page, reused: a
// new tab costs a renderer process, a third of a second each).
let events;
function listen(page) {
    page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning')
            events.console.push(m);
    });
    page.on('pageerror', (e) => events.problems.push(`uncaught error: ${e.message}`));
    page.on('request', (r) => {
        if (inSite(r.url()) === null && !events.outside.has(r.url())) {
            events.outside.add(r.url());
            events.problems.push(`request outside the site: ${r.url()}`);
        }
    });
    page.on('requestfailed', (r) => events.failed.set(r.url(), r.failure()?.errorText ?? 'failed'));
    page.on('response', (r) => {
        if (r.status() >= 400)
            events.failed.set(r.url(), `status ${r.status()}`);
    });
}

// Loads one page; returns its problems, its images' count and its links
// (site-relative, without #fragment).
async function visit(page, name, shot) {
    events = { problems: [], console: [], failed: new Map() /* url -> error text */, outside: new Set() };
    const { problems, failed, outside } = events;

    // 'load' waits for every picture and style sheet (the atlas has no
    // lazy loading: a lazy picture below the fold would count as broken)
    await page.goto(pathToFileURL(path.join(site, name)).href, { waitUntil: 'load' });
    const seen = await page.evaluate(() => ({
        images: Array.from(document.images, (i) => ({ url: i.src, ok: i.complete && i.naturalWidth > 0 })),
        links: Array.from(document.querySelectorAll('a[href]'), (a) => a.href),
    }));

    const reported = new Set(outside);
    for (const img of seen.images) {
        if (img.ok || outside.has(img.url))
            continue;
        const why = failed.get(img.url) ?? 'not loaded';
        problems.push(`broken image: ${inSite(img.url) ?? img.url} (${why})`);
        reported.add(img.url);
    }
    for (const [url, why] of failed)
        if (!reported.has(url)) {
            problems.push(`failed to load: ${inSite(url) ?? url} (${why})`);
            reported.add(url);
        }
    for (const m of events.console) {
        const at = m.location().url;
        // Chromium's own line for a request already reported above
        if (reported.has(at) && m.text().startsWith('Failed to load resource'))
            continue;
        const where = at ? ` (${inSite(at) ?? at}:${m.location().lineNumber + 1})` : '';
        problems.push(`console ${m.type()}: ${m.text()}${where}`);
    }
    const links = [];
    for (const href of seen.links) {
        const rel = inSite(href.split('#')[0]);
        if (rel === null)
            problems.push(`link outside the site: ${href}`);
        else if (!fs.existsSync(path.join(site, rel)))
            problems.push(`link to a missing file: ${rel}`);
        else
            links.push(rel);
    }
    if (shot)
        await page.screenshot({ path: shot, fullPage: true });
    return { problems, images: seen.images.length, links };
}

let browser;
try {
    browser = await chromium.launch({ executablePath: args.chromium, headless: true, chromiumSandbox: false });
} catch (e) {
    die(`could not start ${args.chromium}: ${e.message}`);
}
if (args.shots)
    fs.mkdirSync(args.shots, { recursive: true });
const context = await browser.newContext({ viewport: VIEWPORT, deviceScaleFactor: 1 });
// Nothing may leave the disk: a request elsewhere is refused (and
// reported by visit, which sees every request).
await context.route((u) => u.protocol !== 'file:', (r) => r.abort('blockedbyclient'));
const page = await context.newPage();
listen(page);

const kinds = new Set(['index']);
let level = ['index.html'];
let bad = 0;
for (let depth = 0; depth < 3 && level.length; depth++) {
    const next = [];
    for (const name of level) {
        const shot = args.shots ? path.join(args.shots, `${kindOf(path.posix.basename(name))}.png`) : null;
        let r;
        try {
            r = await visit(page, name, shot);
        } catch (e) {
            r = { problems: [`could not open: ${e.message.split('\n')[0]}`], images: 0, links: [] };
        }
        const n = `${r.images} image${r.images === 1 ? '' : 's'}`;
        if (r.problems.length) {
            bad++;
            console.log(`FAIL  ${name}  ${n}, ${r.problems.length} problem${r.problems.length === 1 ? '' : 's'}:`);
            for (const p of r.problems)
                console.log(`      ${p}`);
        } else {
            console.log(`ok  ${name}  ${n}`);
        }
        for (const l of r.links) {
            const kind = kindOf(path.posix.basename(l));
            if (!l.endsWith('.html') || kinds.has(kind))
                continue;
            kinds.add(kind);
            next.push(l);
        }
    }
    // index (depth 0), the kinds it links (1), and one level further (2)
    level = next;
}
await browser.close();
process.exit(bad ? 1 : 0);
