"""berthd and containerd 1.6 (Debian, with its CRI plugin and runc) side by side
for the CRI benchmarks: each with its own root, state, socket and the same CNI
bridge config (distinct bridges), started and torn down without leftovers."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REGISTRY = os.environ.get("BERTH_REGISTRY_ADDR", "127.0.0.1:5000")
REL = os.path.join(ROOT, "target/release")
IMAGE = f"{REGISTRY}/library/busybox:latest"


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _wait_socket(path, proc, what):
    for _ in range(400):
        if os.path.exists(path):
            return
        if proc.poll() is not None:
            sys.exit(f"{what} exited at start")
        time.sleep(0.025)
    sys.exit(f"{what} did not open {path}")


def _cni_conf(dir_, bridge, subnet, ipam_dir):
    os.makedirs(dir_, exist_ok=True)
    conf = {"cniVersion": "1.0.0", "name": bridge, "plugins": [
        {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": False,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                  "routes": [{"dst": "0.0.0.0/0"}], "dataDir": ipam_dir}},
        {"type": "portmap", "capabilities": {"portMappings": True}}]}
    with open(os.path.join(dir_, "10-bench.conflist"), "w") as f:
        json.dump(conf, f)


class Daemons:
    """`with Daemons() as d:` d.sockets is {"berthd": path, "containerd": path},
    d.pids the daemons' pids."""

    def __enter__(self):
        if os.geteuid() != 0:
            sys.exit("run as root")
        for b in ("berthd", "berth-runtime", "berth-shim", "berth-cri-bench"):
            if not os.path.exists(os.path.join(REL, b)):
                sys.exit(f"{REL}/{b} is missing: run hack/build.sh")
        self.work = tempfile.mkdtemp(prefix="bb-", dir="/run")
        # containerd pins pod network namespaces in /run/netns and may leave them.
        self.netns_before = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
        self.procs = []
        w = self.work
        bd = os.path.join(w, "b")
        _cni_conf(os.path.join(bd, "cni"), "bench-b0", "10.251.0.0/16", os.path.join(bd, "ipam"))
        with open(os.path.join(bd, "berth.toml"), "w") as f:
            f.write(f'listen = "{bd}/sock"\nroot = "{bd}/root"\nstate = "{bd}/s"\n'
                    f'runtime = "{REL}/berth-runtime"\nshim = "{REL}/berth-shim"\nlog_level = "warn"\n'
                    f'[cni]\nconf_dir = "{bd}/cni"\nbin_dirs = ["/usr/lib/cni"]\n')
        berthd = subprocess.Popen([os.path.join(REL, "berthd"), "--config", os.path.join(bd, "berth.toml")],
                                  stderr=open(os.path.join(w, "berthd.log"), "w"))
        self.procs.append(berthd)
        _wait_socket(f"{bd}/sock", berthd, "berthd")
        cd = os.path.join(w, "c")
        _cni_conf(os.path.join(cd, "cni"), "bench-c0", "10.252.0.0/16", os.path.join(cd, "ipam"))
        with open(os.path.join(cd, "config.toml"), "w") as f:
            f.write(f'version = 2\nroot = "{cd}/root"\nstate = "{cd}/state"\n[grpc]\n  address = "{cd}/sock"\n'
                    f'[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "{REGISTRY}/library/pause:latest"\n'
                    # This host cannot lower oom_score_adj (no CAP_SYS_RESOURCE).
                    f'  restrict_oom_score_adj = true\n'
                    f'  [plugins."io.containerd.grpc.v1.cri".cni]\n    bin_dir = "/usr/lib/cni"\n    conf_dir = "{cd}/cni"\n'
                    f'  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."{REGISTRY}"]\n'
                    f'    endpoint = ["http://{REGISTRY}"]\n')
        containerd = subprocess.Popen(["containerd", "--config", os.path.join(cd, "config.toml")],
                                      stderr=open(os.path.join(w, "containerd.log"), "w"))
        self.procs.append(containerd)
        _wait_socket(f"{cd}/sock", containerd, "containerd")
        time.sleep(1)
        subprocess.run(["ctr", "-a", f"{cd}/sock", "-n", "k8s.io", "image", "pull", "--plain-http",
                        f"{REGISTRY}/library/pause:latest"], check=True, stdout=subprocess.DEVNULL)
        self.sockets = {"berthd": f"{bd}/sock", "containerd": f"{cd}/sock"}
        self.pids = {"berthd": berthd.pid, "containerd": containerd.pid}
        return self

    def client(self, name, *args):
        """Runs berth-cri-bench against one daemon; returns its JSON times."""
        argv = [os.path.join(REL, "berth-cri-bench"), "--socket", self.sockets[name], "--image", IMAGE, *args]
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"berth-cri-bench against {name} failed: {r.stderr.strip()[-600:]}")
        return json.loads(r.stdout.strip().splitlines()[-1])

    def __exit__(self, *exc):
        w = self.work
        for p in self.procs:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(["sh", "-c", f"pkill -9 -f 'berth-shim --id .* --state-dir {w}'; "
                        f"pkill -9 -f 'containerd-shim-runc-v2 -namespace k8s.io -address {w}'"])
        time.sleep(0.5)
        subprocess.run(["sh", "-c", f"grep -o ' {w}[^ ]*' /proc/self/mounts | sort -r | xargs -r -n1 umount -l"])
        if os.path.isdir("/run/netns"):
            for ns in set(os.listdir("/run/netns")) - self.netns_before:
                subprocess.run(["umount", "-l", f"/run/netns/{ns}"], stderr=subprocess.DEVNULL)
                try:
                    os.remove(f"/run/netns/{ns}")
                except OSError:
                    pass
        for br in ("bench-b0", "bench-c0"):
            subprocess.run(["ip", "link", "del", br], stderr=subprocess.DEVNULL)
        shutil.rmtree(w, ignore_errors=True)
        return False
