"""The npm package of the browser client (SPEC §9, issue 21): `npm pack` of
web/ holds exactly the module (pushbridge.js and the two files it imports),
its types, its package.json (name pushbridge-client, no dependencies, the
project's version) and a README, and each file of the module in it is the
file the bridge serves at that path (a page importing /pushbridge.js
fetches the others beside it, and 304s them once it has them). A
small app that does `import { connect } from "pushbridge-client"` is
installed from that tarball, bundled with esbuild (from npm, pinned in
tests/browser/package-lock.json) and run in headless Chromium against the
real bridge and the real broker: two tabs of it share one connection (a
bundle has no module URL for a SharedWorker, so a tab holds it through Web
Locks) and both get the events and the recent notifications."""

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import tarfile
import threading

import pytest

from pbutil import unique_uid, wait_until
from test_53_browser import BROWSER_DIR, ROOT, Driver

WEB = os.path.join(ROOT, "web")
# The module's files: the entry and the modules it imports by relative URL.
MODULE = ["pushbridge.js", "pushbridge-connection.js", "pushbridge-share.js"]
ESBUILD = os.path.join(BROWSER_DIR, "node_modules", ".bin", "esbuild")


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    if not shutil.which("npm"):
        pytest.skip("npm is not installed (tests/run.sh installs it)")
    out = tmp_path_factory.mktemp("pack")
    r = subprocess.run(["npm", "pack", "--json", "--pack-destination", str(out)], cwd=WEB,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)[0]
    return os.path.join(out, info["filename"]), info


def test_npm_pack_holds_the_module_and_its_types(tarball):
    path, info = tarball
    assert info["name"] == "pushbridge-client"
    with tarfile.open(path) as tar:
        names = sorted(tar.getnames())
        assert names == sorted(["package/README.md", "package/package.json",
                                "package/pushbridge.d.ts"] + ["package/" + m for m in MODULE])
        pkg = json.load(tar.extractfile("package/package.json"))
        packed = {m: tar.extractfile("package/" + m).read() for m in MODULE}
        packed_dts = tar.extractfile("package/pushbridge.d.ts").read()
    assert "dependencies" not in pkg and "peerDependencies" not in pkg
    assert pkg["type"] == "module" and pkg["types"] == "./pushbridge.d.ts"
    assert pkg["exports"]["."] == {"types": "./pushbridge.d.ts", "import": "./pushbridge.js",
                                   "default": "./pushbridge.js"}
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        version = re.search(r"project\(pushbridge VERSION (\S+)", f.read()).group(1)
    assert pkg["version"] == version, "the package's version is the bridge's"
    for m in MODULE:
        with open(os.path.join(WEB, m), "rb") as f:
            assert packed[m] == f.read(), m
    # Every export of the module is typed: the entry's own and what it
    # re-exports (what the other files export is theirs to hand on).
    entry = packed["pushbridge.js"]
    exports = set(re.findall(rb"^export (?:async )?(?:function|class|const) (\w+)", entry, re.M))
    for names, src in re.findall(rb"^export \{([^}]*)\} from \"\./([\w.-]+)\";", entry, re.M):
        assert src.decode() in MODULE, src
        exports |= {n.strip() for n in names.split(b",")}
    typed = set(re.findall(rb"^export declare (?:function|class|const) (\w+)", packed_dts, re.M))
    assert exports <= typed, f"untyped exports: {exports - typed}"
    assert {b"connect", b"Connection", b"SharedConnection", b"jwtSubject"} <= exports


def test_the_types_parse_as_typescript(tarball):
    if not os.path.exists(ESBUILD):
        pytest.skip("esbuild is not installed: run npm ci in tests/browser (tests/run.sh does)")
    with tarfile.open(tarball[0]) as tar:
        dts = tar.extractfile("package/pushbridge.d.ts").read()
    r = subprocess.run([ESBUILD, "--loader=ts"], input=dts, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()


@pytest.mark.parametrize("name", MODULE)
def test_the_bridge_serves_the_packed_module(tarball, module_bridge_factory, name):
    b = module_bridge_factory.shared(config={"dashboard": {"enabled": True}})
    path, _ = tarball
    with tarfile.open(path) as tar:
        packed = tar.extractfile("package/" + name).read()
    status, headers, body = b.http("GET", "/" + name, public=True)
    assert status == 200 and body == packed
    assert headers["content-type"].startswith("text/javascript"), headers["content-type"]
    etag = headers["etag"]
    assert etag, "no ETag"
    status, _headers, body = b.http("GET", "/" + name, public=True, headers={"If-None-Match": etag})
    assert status == 304 and body == b""
    # The module is the public listener's: the internal one does not serve it.
    status, _headers, _body = b.http("GET", "/" + name)
    assert status == 404


APP = """
import { connect, VERSION } from "pushbridge-client";

const q = new URLSearchParams(location.search);
window.got = [];
window.earlier = [];
window.app = connect(q.get("bridge"), {
  user: q.get("user"),
  recent: 10,
  onEvent: (f) => { got.push(f.data.n); document.querySelector("#out").textContent = got.join(","); },
  onRecent: (f) => earlier.push(f.data.n),
  onState: (s) => { document.body.dataset.state = s.state; },
});
document.body.dataset.version = VERSION;
"""


class StaticServer:
    """The app's files over HTTP on a free port (a thread of this test)."""

    def __init__(self, directory):
        handler = functools.partial(Quiet, directory=directory)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def bundled_app(tarball, tmp_path):
    if not os.path.exists(ESBUILD):
        pytest.skip("esbuild is not installed: run npm ci in tests/browser (tests/run.sh does)")
    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text('{"name": "app", "private": true, "type": "module"}')
    r = subprocess.run(["npm", "install", "--offline", "--no-audit", "--no-fund", "--ignore-scripts",
                        tarball[0]], cwd=app, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for m in MODULE:
        assert (app / "node_modules" / "pushbridge-client" / m).exists(), m
    (app / "main.js").write_text(APP)
    r = subprocess.run([ESBUILD, "main.js", "--bundle", "--format=esm", "--outfile=www/app.js"],
                       cwd=app, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    bundle = (app / "www" / "app.js").read_text()
    assert "pushbridge-client" not in bundle.replace("// node_modules/pushbridge-client", ""), \
        "the import was resolved into the bundle"
    assert re.search(r"\bSharedConnection = class\b|class SharedConnection\b", bundle)
    (app / "www" / "index.html").write_text(
        '<!doctype html><meta charset="utf-8"><title>app</title><body><pre id="out"></pre>'
        '<script type="module" src="app.js"></script></body>')
    server = StaticServer(str(app / "www"))
    yield f"http://127.0.0.1:{server.port}/"
    server.close()


@pytest.fixture(scope="module")
def driver():
    d = Driver()
    yield d
    d.close()


def test_a_bundled_app_runs_in_chromium_and_shares_one_connection(bundled_app, driver,
                                                                  bridge_factory, kafka):
    b = bridge_factory()
    uid = unique_uid()
    kafka.produce(b.topic, json.dumps({"event": "n", "data": {"n": 0}}), key=uid)
    wait_until(lambda: (b.metric("pushbridge_events_consumed_total", topic=b.topic) or 0) >= 1,
               timeout=30, desc="the earlier event consumed")
    url = f"{bundled_app}?bridge=ws://127.0.0.1:{b.public_port}/ws&user={uid}"
    for tab in ("a", "b"):
        driver("open", tab=tab, url=url)
    for tab in ("a", "b"):
        driver("waitFor", tab=tab, js="document.body.dataset.state === 'open'")
    roles = sorted(driver("eval", tab=t, js="app.role") for t in ("a", "b"))
    assert roles == ["follower", "leader"], "a bundle shares through Web Locks"
    wait_until(lambda: b.user_connections(uid) == 1, timeout=10, desc="one connection")
    kafka.produce_many(b.topic, [(uid, json.dumps({"event": "n", "data": {"n": i}})) for i in (1, 2)])
    for tab in ("a", "b"):
        driver("waitFor", tab=tab, js="document.querySelector('#out').textContent === '1,2'")
        assert driver("eval", tab=tab, js="earlier") == [0], "the recent notification"
    assert driver("eval", tab="a", js="document.body.dataset.version") == "1"
    assert b.user_connections(uid) == 1
    for tab in ("a", "b"):
        driver("closeTab", tab=tab)
