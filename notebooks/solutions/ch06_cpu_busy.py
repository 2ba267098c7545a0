"""Chapter 6: the share of CPU time that was busy between two readings of the counters."""

from cube.lab.exercise import exercise

IDLE = ("idle", "iowait")
BUSY = ("user", "nice", "system", "irq", "softirq", "steal")  # guest is inside user


@exercise("ch06_cpu_busy")
def cpu_busy(before, after):
    """Percent of the time between ``before`` and ``after`` (jiffy counters) spent busy."""

    def total(reading, names):
        return sum(float(reading.get(name, 0)) for name in names)

    idle = total(after, IDLE) - total(before, IDLE)
    busy = total(after, BUSY) - total(before, BUSY)
    if idle + busy <= 0:
        return 0.0
    return max(0.0, min(100.0, 100 * busy / (idle + busy)))
