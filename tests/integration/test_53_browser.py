"""The browser side (issue 12, SPEC §9) in a real headless Chromium, driven
by puppeteer-core (tests/browser/driver.mjs), against a real bridge and the
real Kafka broker: the dashboard signs in, progress produced with kcat moves
its bars, a reload brings every task back at once (snapshot), a bridge
restart is ridden out by the page itself, the module works over SSE when
WebSocket is blocked, and a short-lived JWT is renewed through getToken()
without a reconnect. The operator page draws /stats. Screenshots of both
pages go to build/test-artifacts/ (PB_ARTIFACTS overrides). Also runs the
module's unit tests (node --test tests/browser/unit).

If Chromium cannot start here the browser tests skip saying why; they never
pass without a browser."""

import json
import os
import shutil
import subprocess
import time

import pytest

from jwtutil import claims, hs256
from pbutil import unique_uid, wait_until

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BROWSER_DIR = os.path.join(ROOT, "tests", "browser")
ARTIFACTS = os.environ.get("PB_ARTIFACTS", os.path.join(ROOT, "build", "test-artifacts"))
SECRET = "pushbridge-test-secret-0123456789abcdef"


def progress(task, pct, final=False, message=None):
    env = {"event": "task.progress", "task": task,
           "data": {"progress": pct, "message": message or f"{task} at {pct}%"}}
    if final:
        env["final"] = True
    return json.dumps(env)


def test_module_unit_tests_pass():
    if not shutil.which("node"):
        pytest.skip("node is not installed (tests/run.sh installs it)")
    r = subprocess.run(["node", "--test", os.path.join(BROWSER_DIR, "unit")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "# fail 0" in r.stdout


class Driver:
    """The node process that owns the browser: one JSON command, one answer."""

    def __init__(self):
        if not shutil.which("node"):
            pytest.skip("node is not installed (tests/run.sh installs it)")
        if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "puppeteer-core")):
            pytest.skip("puppeteer-core is not installed: run npm ci in tests/browser "
                        "(tests/run.sh does)")
        chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
        if not os.path.exists(chromium):
            pytest.skip(f"no Chromium at {chromium} (Debian package chromium; tests/run.sh "
                        "installs it)")
        self.proc = subprocess.Popen(["node", os.path.join(BROWSER_DIR, "driver.mjs")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=BROWSER_DIR)
        hello = json.loads(self.proc.stdout.readline() or '{"ready":false,"error":"no answer"}')
        if not hello.get("ready"):
            self.proc.wait(10)
            pytest.skip(f"Chromium cannot run here: {hello.get('error')}")

    def __call__(self, cmd, **args):
        self.proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError("the browser driver exited")
        ans = json.loads(line)
        if not ans["ok"]:
            raise AssertionError(f"browser: {cmd} failed: {ans['error']}\n"
                                 + "\n".join(ans.get("log") or []))
        return ans["value"]

    def close(self):
        try:
            self("quit")
        except (AssertionError, BrokenPipeError, ValueError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def driver():
    d = Driver()
    yield d
    d.close()


def screenshot(driver, name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    path = os.path.join(ARTIFACTS, name)
    driver("screenshot", path=path)
    assert os.path.getsize(path) > 1000
    return path


class Dashboard:
    """Page object of / on the public listener."""

    def __init__(self, driver, bridge):
        self.d = driver
        self.url = f"http://127.0.0.1:{bridge.public_port}/"

    def open(self, **kw):
        self.d("open", url=self.url + kw.pop("query", ""), **kw)

    def sign_in(self, user=None, token=None):
        if user:
            self.d("type", selector="#user", text=user)
        if token:
            self.d("type", selector="#token", text=token)
        self.d("click", selector="#signin button[type=submit]")

    def wait_state(self, state, timeout=15000):
        return self.d("waitFor", timeout=timeout,
                      js=f"document.querySelector('#state').dataset.state === {json.dumps(state)}"
                         " && document.querySelector('#state').dataset.transport")

    def bars(self):
        """{task: (value, percent text, message, done)} as the page shows them."""
        return {k: tuple(v) for k, v in self.d("eval", js="""
            Object.fromEntries([...document.querySelectorAll('#tasks li')].map(li => [
              li.dataset.task, [Number(li.dataset.value), li.querySelector('.task-pct').innerText,
                                li.querySelector('.task-msg').innerText, li.dataset.done === 'true']]))
        """).items()}

    def wait_bars(self, want, timeout=15000):
        """want: {task: value}; waits until every bar shows its value."""
        cond = " && ".join(
            f"(document.querySelector('[data-task={json.dumps(t)}]') || {{dataset: {{}}}})"
            f".dataset.value === {json.dumps(str(v))}" for t, v in want.items())
        self.d("waitFor", js=cond, timeout=timeout)
        return self.bars()

    def state_text(self):
        return self.d("eval", js="document.querySelector('#state').innerText")


@pytest.fixture
def dash_bridge(bridge_factory):
    return bridge_factory(config={"dashboard": {"enabled": True}})


def test_dashboard_bars_reload_snapshot_and_restart(driver, dash_bridge, bridge_factory, kafka):
    b = dash_bridge
    uid = unique_uid()
    page = Dashboard(driver, b)
    page.open()
    page.sign_in(user=uid)
    assert page.wait_state("open") == "websocket"
    assert "live" in page.state_text()

    kafka.produce_many(b.topic, [(uid, progress("build-a", 30, message="compiling")),
                                 (uid, progress("build-b", 60, message="linking"))])
    bars = page.wait_bars({"build-a": 30, "build-b": 60})
    assert bars["build-a"] == (30, "30%", "compiling", False)
    assert bars["build-b"] == (60, "60%", "linking", False)
    kafka.produce(b.topic, json.dumps({"event": "order.new", "data": {"message": "order 7 placed"}}),
                  key=uid)
    driver("waitFor", js="document.querySelector('#feed').innerText.includes('order 7 placed')")
    screenshot(driver, "dashboard.png")

    # A reload: the page signs in again by itself and the snapshot brings
    # both bars back at once, before any new event.
    t0 = time.monotonic()
    driver("reload")
    bars = page.wait_bars({"build-a": 30, "build-b": 60}, timeout=5000)
    assert time.monotonic() - t0 < 5
    assert bars["build-b"][2] == "linking"

    # The bridge restarts (SIGTERM, a new process on the same ports and
    # group): the page reconnects by itself and keeps updating.
    cfg = {"listen": b.config["listen"], "dashboard": {"enabled": True}}
    group = b.config["kafka"]["group_id"]
    assert b.stop() == 0
    driver("waitFor", js="document.querySelector('#state').dataset.state === 'reconnecting'")
    b2 = bridge_factory(config=cfg, topic=b.topic, create_topic=False, group_id=group)
    page.wait_state("open", timeout=40000)
    kafka.produce_many(b2.topic, [(uid, progress("build-a", 90, message="testing")),
                                  (uid, progress("build-b", 100, final=True, message="done"))])
    bars = page.wait_bars({"build-a": 90, "build-b": 100}, timeout=20000)
    assert bars["build-a"] == (90, "90%", "testing", False)
    assert bars["build-b"] == (100, "done", "done", True)
    assert b2.user_connections(uid) == 1


def test_websocket_blocked_works_over_sse(driver, dash_bridge, kafka):
    b = dash_bridge
    uid = unique_uid()
    page = Dashboard(driver, b)
    page.open(blockWebSocket=True)
    page.sign_in(user=uid)
    assert page.wait_state("open") == "sse"
    assert "SSE" in page.state_text()
    assert b.user_connections(uid) == 1
    kafka.produce(b.topic, progress("export", 45, message="exporting rows"), key=uid)
    assert page.wait_bars({"export": 45})["export"] == (45, "45%", "exporting rows", False)
    driver("reload")  # the snapshot over SSE too
    assert page.wait_bars({"export": 45}, timeout=5000)["export"][2] == "exporting rows"
    assert page.wait_state("open") == "sse"


def test_jwt_expiring_token_is_refreshed_through_get_token_without_reconnect(
        driver, bridge_factory, kafka):
    b = bridge_factory(config={"dashboard": {"enabled": True},
                               "auth": {"mode": "jwt", "jwt_secret": SECRET, "jwt_leeway_s": 0}})
    uid = unique_uid()
    page = Dashboard(driver, b)
    # The page's getToken() mints 8-second tokens (the driver signs them as
    # jwtutil does); the refresh is asked at half the life, ~4 s in.
    page.open(token={"secret": SECRET, "sub": uid, "lifetime": 8})
    page.sign_in(token=hs256(claims(uid, lifetime=8), SECRET))
    assert page.wait_state("open") == "websocket"
    driver("eval", js="""(() => { window.seen = {welcome: 0, refreshed: 0};
        pushbridgeConnection.addEventListener('welcome', () => seen.welcome++);
        pushbridgeConnection.addEventListener('refresh', (e) => {
          if (e.detail.type === 'refreshed') seen.refreshed++; }); })()""")
    driver("waitFor", js="seen.refreshed >= 1", timeout=12000)
    # Past the first token's exp (8 s): still the same connection.
    time.sleep(max(0.0, 9.5 - 4.0))
    kafka.produce(b.topic, progress("report", 70), key=uid)
    assert page.wait_bars({"report": 70})["report"][0] == 70
    seen = driver("eval", js="seen")
    assert seen["welcome"] == 0, "no reconnect"
    assert driver("eval", js="window.pushbridgeTokenCalls") >= 1
    assert b.user_connections(uid) == 1


class OperatorPage:
    """Page object of / on the internal listener."""

    def __init__(self, driver, bridge):
        self.d = driver
        self.url = f"http://127.0.0.1:{bridge.internal_port}/"

    def open(self):
        self.d("open", url=self.url)

    def figure(self, name):
        return self.d("eval", js=f"document.querySelector('[data-stat={json.dumps(name)}]').innerText")


def test_operator_page_draws_live_stats(driver, dash_bridge, kafka):
    b = dash_bridge
    uid = unique_uid()
    c, _ = b.native_client(uid)
    page = OperatorPage(driver, b)
    page.open()
    driver("waitFor", js="document.querySelector('[data-stat=connections]').innerText === '1'")
    assert page.figure("users") == "1"
    kafka.produce_many(b.topic, [(uid, progress("t", i)) for i in range(20)])
    for _ in range(20):
        c.recv_json(10)
    driver("waitFor", js="Number(document.querySelector('[data-stat=delivered]').innerText) >= 20",
           timeout=10000)
    driver("waitFor", js="document.querySelectorAll('svg polyline').length >= 2")
    driver("waitFor", js="document.querySelector('#lag tbody').children.length >= 1")
    # How each topic is read (SPEC 12): this one by no rule, as the envelope.
    driver("waitFor", js="[...document.querySelectorAll('#topics tbody tr')].some(tr => "
                         f"tr.cells[0].innerText === {json.dumps(b.topic)} && "
                         "tr.cells[1].innerText === 'envelope')")
    screenshot(driver, "operator.png")


def test_operator_page_shows_the_clusters_nodes(driver, bridge_factory, kafka):
    """SPEC §8: two nodes in cluster mode; n1's operator page lists both, with
    n2's user counted, as presence (GET /cluster) tells it."""
    topic, presence = kafka.unique_topic(), kafka.unique_topic("presence")
    push = kafka.unique_topic("push")
    kafka.create_topic(topic, 1)
    group = f"g-{unique_uid('op')}"
    def node(name):
        return bridge_factory(config={"cluster": {"mode": "kafka", "node_name": name,
                                                  "presence_topic": presence},
                                      "push": {"topic": push}},
                              topic=topic, create_topic=False, group_id=group)
    n1, n2 = node("n1"), node("n2")
    n2.native_client(unique_uid())
    page = OperatorPage(driver, n1)
    page.open()
    driver("waitFor", timeout=10000, js="""(() => {
      const rows = [...document.querySelectorAll('#nodes tbody tr')].map((tr) =>
        [...tr.children].map((td) => td.innerText));
      return rows.length === 2 && rows[0][0] === 'n1 (this node)' &&
        rows.some((r) => r[0] === 'n2' && r[3] === '1' && r[4] === '1');
    })()""")
    assert "kafka, 2 nodes" in driver("eval", js="document.getElementById('cluster-mode').textContent")
    screenshot(driver, "operator-nodes.png")
