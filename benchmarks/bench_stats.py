import time
import numpy as np
from mixgap import stats
rng = np.random.default_rng(1)
def t(label, fn, reps=5):
    fn(); best = min((lambda s: (fn(), time.perf_counter() - s)[1])(time.perf_counter()) for _ in range(reps))
    print(f"{label:<62} {best*1000:8.1f} ms")
n = 5000
a, b = rng.random(n) < 0.6, rng.random(n) < 0.55
t("compare, 1 benchmark x 5000 problems, 1 seed/arm, B=10000", lambda: stats.compare({"m": a}, {"m": b}))
t("accuracy_ci, 5000 problems, B=10000", lambda: stats.accuracy_ci(a))
A, Bm = rng.random((3, n)) < 0.6, rng.random((3, n)) < 0.55
t("compare, 5000 problems, 3+3 independent seeds (k<=64)", lambda: stats.compare({"m": A}, {"m": Bm}))
sizes = {"math500": 500, "gsm8k": 1319, "aime24": 30, "amc23": 40, "olympiadbench": 675}
arms = [{k: rng.random(v) < 0.5 for k, v in sizes.items()} for _ in range(2)]
t("compare, the paper's 5 benchmarks (2564 problems), 1 seed/arm", lambda: stats.compare(*arms))
A, Bm = rng.random((8, n)) < 0.6, rng.random((8, n)) < 0.55
t("worst case: 8+8 independent seeds, 5000 problems (k~5000)", lambda: stats.compare({"m": A}, {"m": Bm}), reps=1)
