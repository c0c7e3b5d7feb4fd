"""How a stack run maps onto dask (see ``stack``): the graph of its tasks (``stack_tasks``),
and running it on dask's threaded scheduler in this process or on a ``dask.distributed``
cluster, with records handed out as planes finish and a Stop that keeps the planes under way.
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Callable, Iterator

from . import stack_tasks  # looked up at each graph: a test may wrap ``plane_task``
from .stack_tasks import PlaneJob, PlaneRecord

#: The start of the dask key of every plane's task (which returns (record, carry)).
PLANE_TASK = "napari-nst-plane-"


def build_graph(
    styles: list, job: PlaneJob, chains: list[list[tuple]], inputs: Callable[[tuple], tuple]
) -> list:
    """One delayed record per plane: the style target once, then the planes, each chain in
    order (a plane's task takes its predecessor's carry). ``inputs(index)``: the plane's
    (content, labels) arguments of its task."""
    import dask

    token = uuid.uuid4().hex[:8]
    target = dask.delayed(stack_tasks.style_target, pure=False)(
        styles, job.settings, dask_key_name=f"napari-nst-style-{token}"
    )
    records = []
    for chain in chains:
        previous = None
        for index in chain:
            name = "-".join(map(str, index)) or "0"
            plane, labels = inputs(index)
            task = dask.delayed(stack_tasks.plane_task, nout=2)(
                plane,
                index,
                target,
                job,
                previous,
                labels,
                dask_key_name=f"{PLANE_TASK}{token}-{name}",
            )
            records.append(task[0])
            previous = task[1]
    return records


def run_local(records: list, client=None, late=None) -> Iterator[PlaneRecord]:
    """The graph on dask's threaded scheduler (one worker thread) in a background thread; records
    come back through a queue as each plane finishes. Closing stops before the next task; the
    planes under way finish and go to ``late``."""
    import dask

    results: queue.Queue = queue.Queue()
    stop = threading.Event()
    finished = object()

    class _Stopped(Exception):
        pass

    def pretask(key, dsk, state):
        if stop.is_set():
            raise _Stopped

    def posttask(key, result, dsk, state, worker_id):
        # a record as soon as its plane's task ends, which wrote the plane: the task that
        # takes the record out of its result is one of its own, which a Stop could prevent
        if isinstance(key, str) and key.startswith(PLANE_TASK):
            results.put(result[0])

    def compute():
        try:
            # our callbacks passed explicitly: with dask's global ones (``with Callback()``) the
            # scheduler swaps ``Callback.active`` out for the whole run, from this thread, under
            # napari, which registers its own cache there while it slices dask layers
            # (start, start_state, pretask, posttask, finish), dask's documented tuple form
            dask.compute(
                *records,
                scheduler="threads",
                num_workers=1,
                callbacks=[(None, None, pretask, posttask, None)],
            )
            results.put(finished)
        except _Stopped:
            results.put(finished)
        except BaseException as error:  # handed to the consumer's thread
            results.put(error)

    thread = threading.Thread(target=compute, name="napari-nst-stack", daemon=True)
    thread.start()
    try:
        while (item := results.get()) is not finished:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
        while not results.empty():
            item = results.get()
            if isinstance(item, PlaneRecord) and late is not None:
                late(item)


def run_distributed(records: list, client, late=None) -> Iterator[PlaneRecord]:
    """The graph on a ``dask.distributed`` cluster; records as their planes finish. Closing
    cancels the planes not done; those finished but not yet handed out go to ``late``."""
    from distributed import as_completed

    futures = client.compute(records)
    handed = set()
    try:
        for future in as_completed(futures):
            record = future.result()
            handed.add(future.key)
            future.release()
            yield record
    finally:
        finished = [f.result() for f in futures if f.key not in handed and f.status == "finished"]
        client.cancel(futures)
        for record in finished if late is not None else ():
            late(record)
