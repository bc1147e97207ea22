// The operator page at / on the internal listener: polls /stats and
// /cluster once a second (same origin, nothing fetched from elsewhere) and
// draws the last two minutes as hand-made SVG polylines.
const POINTS = 120;
const series = { conn: [], users: [], in: [], out: [] };
const colours = { conn: "#2f6fed", users: "#7c3aed", in: "#0891b2", out: "#16a34a" };
let last = null;

const set = (name, v) => document.querySelectorAll(`[data-stat="${name}"]`).forEach((el) => { el.textContent = String(v); });

function push(name, v) {
  const s = series[name];
  s.push(v);
  if (s.length > POINTS) s.shift();
}

// One polyline scaled to its own maximum (a flat line at the bottom when 0).
function draw(id, name) {
  const s = series[name];
  const max = Math.max(1, ...s);
  const pts = s.map((v, i) => `${(i * 120) / (POINTS - 1)},${58 - (v / max) * 54}`).join(" ");
  document.getElementById(id).innerHTML =
    `<polyline stroke="${colours[name]}" points="${pts}"></polyline>` +
    `<text x="118" y="10" text-anchor="end" font-size="8" fill="#6b7280">${max}</text>`;
}

function rows(tbody, list) {
  tbody.replaceChildren(...list.map((cells) => {
    const tr = document.createElement("tr");
    cells.forEach((c, i) => {
      const td = document.createElement("td");
      td.textContent = String(c);
      if (i === cells.length - 1) td.className = "n";
      tr.append(td);
    });
    return tr;
  }));
}

async function poll() {
  let st;
  try {
    const r = await fetch("/stats", { cache: "no-store" });
    st = await r.json();
  } catch (e) {
    document.getElementById("ready").textContent = "bridge unreachable";
    document.getElementById("ready").className = "bad";
    return;
  }
  const now = performance.now();
  const topics = Object.entries(st.topics || {});
  const consumed = topics.reduce((a, [, t]) => a + t.consumed, 0);
  const delivered = topics.reduce((a, [, t]) => a + t.delivered, 0);
  const dt = last ? (now - last.t) / 1000 : 0;
  const inRate = dt ? Math.max(0, Math.round((consumed - last.consumed) / dt)) : 0;
  const outRate = dt ? Math.max(0, Math.round((delivered - last.delivered) / dt)) : 0;
  last = { t: now, consumed, delivered };

  const ready = document.getElementById("ready");
  ready.textContent = st.kafka_ready ? "ready" : "not ready";
  ready.className = st.kafka_ready ? "ok" : "bad";
  document.getElementById("uptime").textContent = `up ${st.uptime_s} s`;
  set("connections", st.connections);
  set("users", st.users);
  set("in_rate", inRate);
  set("out_rate", outRate);
  set("consumed", consumed);
  set("delivered", delivered);
  set("slow_client_closes", st.slow_client_closes);
  set("queue_dropped", st.queue_dropped);
  set("queue_bytes", st.queue_bytes);
  set("tasks", st.state ? st.state.tasks : 0);
  set("state_users", st.state ? st.state.users : 0);
  set("history_events", st.history ? st.history.events : 0);
  push("conn", st.connections); push("users", st.users); push("in", inRate); push("out", outRate);
  draw("c-conn", "conn"); draw("c-users", "users"); draw("c-in", "in"); draw("c-out", "out");

  rows(document.querySelector("#lag tbody"),
       (st.partitions || []).map((p) => [p.topic, p.partition, p.lag < 0 ? "unknown" : p.lag]));
  // kafka.inputs (SPEC 12): the rule that reads each topic, or the envelope.
  rows(document.querySelector("#topics tbody"),
       topics.filter(([name]) => name !== "http").map(([name, t]) => [
         name, t.rule == null ? t.format || "envelope" : `${t.format} (kafka.inputs[${t.rule}])`,
         t.consumed, t.delivered, t.dropped]));
  const drops = [];
  for (const [name, t] of topics)
    for (const [reason, n] of Object.entries(t.dropped_by_reason || {})) drops.push([name, reason, n]);
  rows(document.querySelector("#drops tbody"), drops.length ? drops : [["–", "none", 0]]);
}

// The live nodes (GET /cluster): this one first, then the others as
// presence last heard from them.
async function pollNodes() {
  let doc;
  try {
    doc = await (await fetch("/cluster", { cache: "no-store" })).json();
  } catch (e) {
    return;
  }
  document.getElementById("cluster-mode").textContent =
    `${doc.mode}, ${doc.nodes.length} node${doc.nodes.length === 1 ? "" : "s"}`;
  rows(document.querySelector("#nodes tbody"), doc.nodes.map((n) => [
    n.self ? `${n.name} (this node)` : n.name, n.version,
    n.self ? "now" : `${(n.last_seen_ms / 1000).toFixed(1)} s ago`, n.users, n.connections]));
}

poll();
pollNodes();
setInterval(() => { poll(); pollNodes(); }, 1000);
