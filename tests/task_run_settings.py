"""Settings shared by the session-wide tiny-model task runs (conftest) and the tests using them.

They live in their own module because `from conftest import ...` can resolve to another
folder's conftest.py when the whole suite runs.
"""

# Items per trial in the shared tiny-model runs of every built-in task: enough for every metric
# to be defined (ROC-AUC needs both labels), few enough to keep the eight runs short on a CPU.
TINY_RUN_SAMPLES = 8
