// ONNX Runtime's forward pass, for tools/bench_compare.py (a benchmark,
// never a test). Needs npm's onnxruntime-node (CPU build):
//   npm install --ignore-scripts onnxruntime-node   (in DIR; then NODE_PATH=DIR/node_modules)
// usage: node tools/bench_ort.js MODEL.onnx SIZE THREADS ITERS
// prints {"median": ms, "min": ms} over ITERS runs after 3 warm-ups, of
// one image filled with a fixed pattern, all graph optimizations on.
const ort = require('onnxruntime-node');

async function main() {
    const [model, size, threads, iters] = [process.argv[2], +process.argv[3], +process.argv[4], +process.argv[5]];
    const s = await ort.InferenceSession.create(model, {
        intraOpNumThreads: threads, interOpNumThreads: 1,
        graphOptimizationLevel: 'all', executionMode: 'sequential',
    });
    const n = 3 * size * size, data = new Float32Array(n);
    for (let i = 0; i < n; i++)
        data[i] = Math.sin(i * 0.37);
    const feeds = {};
    feeds[s.inputNames[0]] = new ort.Tensor('float32', data, [1, 3, size, size]);
    for (let i = 0; i < 3; i++)
        await s.run(feeds);
    const t = [];
    for (let i = 0; i < iters; i++) {
        const a = process.hrtime.bigint();
        await s.run(feeds);
        t.push(Number(process.hrtime.bigint() - a) / 1e6);
    }
    t.sort((a, b) => a - b);
    const m = t.length % 2 ? t[t.length >> 1] : (t[t.length / 2 - 1] + t[t.length / 2]) / 2;
    console.log(JSON.stringify({median: m, min: t[0], version: ort.env.versions ? ort.env.versions.common : '?'}));
}

main().catch((e) => { console.error(e.message); process.exit(1); });
