"""The block JIT's runtime: translation table, hot-block requests, compile process, invalidation.

Native side (``codegen.emit_jit_dispatch``): at every branch target the interpreter looks up
``(EIP, physical address, code size)`` in a two-way set-associative table of translated
blocks.  A miss bumps a counter; when it reaches the threshold the address is appended to a
request ring.  Python side (this module), between two ``run()`` calls on the machine thread:

* requests are turned into jobs: the block's bytes are copied, the 64-byte lines it reads
  are marked in its page's mask and the page's TLB write tags are dropped (every later write
  to the page takes the slow path; one that changes a marked line makes the page's
  translations stale by bumping its generation, QEMU style), and the jobs go to a compile
  process in batches (or are compiled at once in ``sync`` mode).  A process, not a thread: IR generation is Python, and a thread would take the
  GIL from the machine thread (every port access of the guest needs it);
* finished object code is linked in, and each block is installed if its page generation is
  still current.

Guest writes through the CPU invalidate in native code (``system.invalidate_code``);
writes from the host (device DMA through ``GuestMemory.write``, ``rep ins`` chunks) call
:meth:`JitRuntime.invalidate`.  The code cache is bounded: past ``max_blocks`` translations
everything is dropped and hot code is translated again.
"""
from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import threading
import time

import numpy as np

from . import state as S

log = logging.getLogger(__name__)

ENTRY_DTYPE = np.dtype({"names": ["eip", "phys", "mode", "gen", "ninsn", "pad", "fn"],
                        "formats": ["<u4"] * 6 + ["<u8"],
                        "offsets": [0, 4, 8, 12, 16, 20, 24], "itemsize": S.JIT_ENTRY_SIZE})
DEFAULT_THRESHOLD = 2000
MAX_INVALIDATIONS = 8        # a page rewritten more often than this is left to the interpreter
BATCH = 16
MAX_BACKLOG = 128
PROBE_THRESHOLD = 64         # hits before the disk cache is asked for a block's translation


def settings_from_env() -> dict:
    """``PYV86_JIT``: ``1``/``on`` enables the JIT (off by default: on the Linux boot and the
    network benchmarks it does not pay for itself yet, see docs/jit.md), ``sync`` translates
    at once (tests); ``PYV86_JIT_THRESHOLD``: branch-target hits before a block is translated."""
    mode = os.environ.get("PYV86_JIT", "0").strip().lower()
    out = {"enabled": mode not in ("", "0", "off", "no", "false"), "sync": mode == "sync"}
    thr = os.environ.get("PYV86_JIT_THRESHOLD")
    if thr:
        try:
            out["threshold"] = max(1, int(thr))
        except ValueError:
            log.warning("PYV86_JIT_THRESHOLD=%r is not a number; using %d", thr, DEFAULT_THRESHOLD)
    return out


def _line_mask(first: int, last: int) -> int:
    """Bits of the 64-byte lines of a page that bytes ``first..last`` (offsets in the page)
    touch: the per-page code mask (``state.jit_code_pages``) uses one bit per line."""
    return ((1 << ((last >> 6) + 1)) - 1) ^ ((1 << (first >> 6)) - 1)


class _Job:
    __slots__ = ("eip", "phys", "code32", "slot", "gen", "code", "key", "size")

    def __init__(self, eip, phys, code32, slot, gen, code):
        self.eip, self.phys, self.code32, self.slot, self.gen, self.code = eip, phys, code32, slot, gen, code
        self.key = None     # its name in the disk cache
        self.size = 0       # bytes, once decoded


class _CompileProcess:
    """The one compile process of this Python process, shared by every CPU's JIT; replies are
    routed back to the runtime that sent the batch."""

    _instance: "_CompileProcess | None" = None
    _lock = threading.Lock()

    def __init__(self, verbose: bool):
        if verbose:
            print("pyv86: JIT compiling hot guest code in a background process", file=sys.stderr,
                  flush=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.proc = subprocess.Popen([sys.executable, "-m", "pyv86.cpu.jitworker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.routes: dict[int, queue.Queue] = {}
        self.next_id = 0
        threading.Thread(target=self._read, name="pyv86-jit-replies", daemon=True).start()

    @classmethod
    def get(cls, verbose: bool) -> "_CompileProcess | None":
        with cls._lock:
            inst = cls._instance
            if inst is None or inst.proc.poll() is not None:
                try:
                    inst = cls._instance = cls(verbose)
                except OSError as exc:
                    log.warning("pyv86 JIT: cannot start the compile process (%s); running "
                                "interpreted", exc)
                    return None
            return inst

    def send(self, jobs, replies: queue.Queue) -> int | None:
        from .jitworker import write_message
        with self._lock:
            bid = self.next_id
            self.next_id += 1
            self.routes[bid] = replies
            try:
                write_message(self.proc.stdin, (bid, jobs))
            except (OSError, ValueError) as exc:
                self.routes.pop(bid, None)
                log.warning("pyv86 JIT: compile process unreachable (%s); running interpreted", exc)
                return None
        return bid

    def forget(self, replies: queue.Queue) -> None:
        with self._lock:
            for bid in [b for b, q in self.routes.items() if q is replies]:
                del self.routes[bid]

    def _read(self) -> None:
        """Blocked in read() (without the GIL) until a reply arrives."""
        from .jitworker import read_message
        while True:
            try:
                msg = read_message(self.proc.stdout)
            except (OSError, ValueError, EOFError):
                msg = None
            with self._lock:
                if msg is None:
                    routes, self.routes = list(self.routes.values()), {}
                else:
                    routes = [self.routes.pop(msg[0], None)]
            for q in routes:
                if q is not None:
                    q.put(msg)
            if msg is None:
                return


class JitRuntime:
    """The JIT attached to one :class:`~pyv86.cpu.cpu.CPU`."""

    def __init__(self, cpu, threshold: int = DEFAULT_THRESHOLD, sync: bool = False,
                 max_blocks: int = 50_000, verbose: bool = True, cache: bool | None = None):
        """``cache``: keep translations on disk between runs (:mod:`.jitcache`); default:
        on unless ``PYV86_JIT_CACHE=0``, and off in ``sync`` mode (tests compare tiers)."""
        self.cpu = cpu
        self.threshold = max(1, int(threshold))
        self.sync = sync
        self.max_blocks = max_blocks
        self.verbose = verbose
        npages = cpu.memory.size >> 12
        self.table = np.zeros(S.JIT_TABLE_SIZE, dtype=ENTRY_DTYPE)
        self.hot = np.zeros(S.JIT_TABLE_SIZE, dtype=np.uint32)
        self.req = np.zeros(S.JIT_REQ_CAP * 4, dtype=np.uint32)
        self.code_pages = np.zeros(npages, dtype=np.uint64)   # bit i: 64-byte line i has code
        self.page_gen = np.zeros(npages, dtype=np.uint32)
        self._engines: list = []
        self._inflight: dict[int, tuple[list[_Job], float]] = {}   # batch id -> jobs, start
        self._backlog: list[_Job] = []
        self._replies: queue.Queue = queue.Queue()
        self._flush_gens = 0
        self._banked = [0, 0]       # blocks entered / instructions before the last state reset
        self._announced = False
        if cache is None:
            from .jitcache import enabled_from_env
            cache = enabled_from_env() and not sync
        self.tcache = None
        if cache:
            from .jitcache import TranslationCache
            self.tcache = TranslationCache()
        # with the disk cache, a block is looked up there once it is lukewarm (installing a
        # cached translation costs little) and compiled only once it is hot
        self.probe_threshold = min(self.threshold, PROBE_THRESHOLD) if self.tcache else self.threshold
        self._probed: set[tuple[int, int, bool]] = set()
        self.stats = {"requests": 0, "translated": 0, "untranslatable": 0, "installed": 0,
                      "stale": 0, "skipped_pages": 0, "flushes": 0, "batches": 0, "compile_s": 0.0,
                      "host_invalidations": 0, "errors": 0, "deferred": 0, "cache_hits": 0,
                      "evicted": 0}
        self.attach()

    # ------------------------------------------------------------------ wiring
    def attach(self) -> None:
        """(Re)write the state fields after the CPU state was reset or restored."""
        st = self.cpu.state
        st["jit_table"] = self.table.ctypes.data
        st["jit_hot"] = self.hot.ctypes.data
        st["jit_req"] = self.req.ctypes.data
        st["jit_code_pages"] = self.code_pages.ctypes.data
        st["jit_page_gen"] = self.page_gen.ctypes.data
        st["jit_threshold"] = self.probe_threshold
        st["jit_req_cap"] = S.JIT_REQ_CAP
        st["jit_sync"] = 1 if self.sync else 0
        st["jit_nreq"] = 0
        st["jit_on"] = 1

    def bank_counters(self) -> None:
        """Keep the native counters before the CPU state is zeroed (reset, restore)."""
        st = self.cpu.state
        self._banked[0] += int(st["jit_calls"])
        self._banked[1] += int(st["jit_insns"])

    def flush(self) -> None:
        """Forget every translation (reset, restore, or the code cache is full)."""
        self.table[:] = 0
        self.hot[:] = 0
        self.code_pages[:] = 0
        self.page_gen += 1          # results still in the compile thread become stale
        self._flush_gens += len(self.page_gen)
        self.cpu.state["jit_nreq"] = 0
        self._engines = []
        self._backlog = []
        if self.tcache is not None:
            self.tcache.unload()
        from .jit import new_link_generation
        new_link_generation()
        self._probed.clear()
        self.stats["flushes"] += 1

    # ------------------------------------------------------------------ per slice
    def after_run(self) -> None:
        """Between two native runs on the machine thread: link finished batches, then take new
        requests."""
        if self._inflight:
            self._collect(block=False)
        jobs = self._take_requests() if self.cpu.state["jit_nreq"] else []
        if jobs:
            if self.sync:
                t0 = time.perf_counter()
                from .jit import translate_batch
                try:
                    obj, out = translate_batch([(j.eip, j.code32, j.code) for j in jobs])
                except Exception as exc:   # a translator bug: those blocks stay interpreted
                    log.warning("pyv86 JIT: translating %d blocks failed (%s: %s); they stay "
                                "interpreted", len(jobs), type(exc).__name__, exc)
                    self.stats["errors"] += 1
                    obj, out = None, [None] * len(jobs)
                self._link(jobs, obj, out, time.perf_counter() - t0)
            else:
                self._backlog.extend(jobs)      # (_take_requests keeps it within MAX_BACKLOG)
        self._submit_next()

    def _submit_next(self) -> None:
        """Send the hottest waiting blocks, unless two batches are already in flight. A slot
        keeps counting branch-target hits while its request waits, so a loop that became hot
        behind a burst of lukewarm requests (the boot's, say) is compiled next."""
        if self._backlog and len(self._inflight) < 2:
            hot = self.hot
            self._backlog.sort(key=lambda j: int(hot[j.slot]), reverse=True)
            batch, self._backlog = self._backlog[:BATCH], self._backlog[BATCH:]
            self._submit(batch)

    def _ask_again_after(self, slot: int, hits: int) -> None:
        """Make the slot's next request come after ``hits`` more hits than usual: its counter
        starts below zero (it wraps round, then counts up to the request threshold again)."""
        self.hot[slot] = (1 << 32) - hits

    def _take_requests(self) -> list[_Job]:
        """The requests of the last slice: translations from the disk cache are installed at
        once; blocks to compile are decoded (their 64-byte lines marked) and returned."""
        st = self.cpu.state
        n = int(st["jit_nreq"])
        st["jit_nreq"] = 0
        reqs = self.req[:4 * n].reshape(n, 4).tolist()
        ram = self.cpu.memory.ram
        from .blockdecode import decode_block
        from .jit import MAX_BLOCK_INSNS
        jobs, pages, cached = [], [], []
        tcache = self.tcache
        for eip, phys, code32, slot in reqs:
            self.stats["requests"] += 1
            page = phys >> 12
            if self.page_gen[page] - self.stats["flushes"] > MAX_INVALIDATIONS:   # (flushes bump all)
                self.stats["skipped_pages"] += 1
                continue
            # the rest of the page, at most what a block can use (48 instructions of at most
            # 15 bytes): two batches in flight then fit in the pipe, so sending never blocks
            end = min((page + 1) << 12, phys + 768)
            code = ram[phys:end].tobytes()
            job = _Job(eip, phys, bool(code32), slot, int(self.page_gen[page]), code)
            if tcache is not None:
                job.key = tcache.key(eip, job.code32, code)
                hit = tcache.lookup(job.key, code)
                if hit is not None:
                    fn, ninsn, size = hit
                    cached.append((job, fn, ninsn))
                    self._mark_lines(page, phys, size, pages)
                    continue
                if not self._hot_enough(job):
                    continue
            if not self.sync and len(self._backlog) + len(jobs) >= MAX_BACKLOG:
                # no room: a new request is the coldest there is (counts only grow), so it
                # waits without being decoded, to be asked for again much later
                self._ask_again_after(slot, 8 * self.threshold)
                self.stats["deferred"] += 1
                continue
            insns = decode_block(code, 0, eip, job.code32, MAX_BLOCK_INSNS)
            if not insns:
                self.stats["untranslatable"] += 1
                continue
            # the 64-byte lines the block reads: only writes to them make it stale
            job.size = insns[-1].offset + insns[-1].length
            jobs.append(job)
            self._mark_lines(page, phys, job.size, pages)
        if pages:
            self._drop_write_tags(pages)
        for job, fn, ninsn in cached:
            self.stats["cache_hits"] += 1
            self._install(job, fn, ninsn)
        return jobs

    def _mark_lines(self, page: int, phys: int, size: int, new_pages: list[int]) -> None:
        if not self.code_pages[page]:
            new_pages.append(page)
        self.code_pages[page] |= np.uint64(_line_mask(phys & 0xFFF, (phys & 0xFFF) + size - 1))

    def _hot_enough(self, job: _Job) -> bool:
        """With the cache probed early (at ``probe_threshold`` hits), a block it does not hold
        is compiled only when asked for again, after ``threshold`` hits in all."""
        if self.probe_threshold >= self.threshold:
            return True
        k = (job.eip, job.phys, job.code32)
        if k in self._probed:
            self._probed.discard(k)
            return True
        self._probed.add(k)
        self._ask_again_after(job.slot, self.threshold - self.probe_threshold)
        return False

    def _drop_write_tags(self, pages: list[int]) -> None:
        """TLB write tags that map to the given physical pages: the next write misses the TLB
        and goes through the slow path, which invalidates."""
        st = self.cpu.state
        tags = st["tlb_tag"].reshape(S.TLB_KINDS, S.TLB_SIZE)
        delta = st["tlb_delta"].astype(np.uint64)
        want = np.asarray(pages, dtype=np.uint64)
        for kind in (1, 3):
            t = tags[kind]
            phys_page = (((t & ~np.uint32(0xFFF)).astype(np.uint64) + delta) & 0xFFFFFFFF) >> 12
            hit = ((t & 1) != 0) & np.isin(phys_page, want)
            if hit.any():
                t[hit] = 0

    def invalidate(self, phys: int, length: int) -> None:
        """The host wrote guest RAM ``[phys, phys+length)`` (DMA, ``rep ins``)."""
        if length <= 0:
            return
        first, last = phys >> 12, min((phys + length - 1) >> 12, len(self.code_pages) - 1)
        if first > last:
            return
        seg = self.code_pages[first:last + 1]
        if not seg.any():
            return
        end = phys + length
        for k in np.nonzero(seg)[0].tolist():
            page = first + k
            lo = max(phys, page << 12) - (page << 12)
            hi = min(end, (page + 1) << 12) - 1 - (page << 12)
            if int(seg[k]) & _line_mask(lo, hi):
                self.page_gen[page] += 1
                seg[k] = 0
                self.cpu.state["smc"] = 1
                self.stats["host_invalidations"] += 1

    # ------------------------------------------------------------------ compile
    def _submit(self, jobs: list[_Job]) -> None:
        worker = _CompileProcess.get(self.verbose and not self._announced)
        self._announced = True
        if worker is None:
            return
        bid = worker.send([(j.eip, j.code32, j.code) for j in jobs], self._replies)
        if bid is not None:
            self._inflight[bid] = (jobs, time.perf_counter())

    def _collect(self, block: bool) -> None:
        while self._inflight:
            try:
                msg = self._replies.get(timeout=0.05) if block else self._replies.get_nowait()
            except queue.Empty:
                return
            if msg is None:
                log.warning("pyv86 JIT: the compile process ended; its batches are lost")
                self._inflight.clear()
                return
            bid, obj, out, err = msg
            jobs, t0 = self._inflight.pop(bid, (None, 0.0))
            if jobs is None:
                continue
            if err:
                self.stats["errors"] += 1
                log.warning("pyv86 JIT: a batch of %d blocks failed to translate (%s); they "
                            "stay interpreted", len(jobs), err)
            self._link(jobs, obj, out, time.perf_counter() - t0)

    def _link(self, jobs: list[_Job], obj: bytes | None, out: list, seconds: float) -> None:
        from .jit import load_object
        self.stats["batches"] += 1
        self.stats["compile_s"] += seconds
        ee = load_object(obj) if obj else None
        if ee is not None:
            if all(e is not ee for e in self._engines):    # (one engine holds many objects)
                self._engines.append(ee)
            if self.tcache is not None:
                self.tcache.store(obj, [(j.key, r[0], r[1], j.code[:j.size])
                                        for j, r in zip(jobs, out) if r], ee)
        for job, res in zip(jobs, out):
            if res is None:
                self.stats["untranslatable"] += 1
                continue
            self.stats["translated"] += 1
            name, ninsn = res
            self._install(job, ee.get_function_address(name), ninsn)

    def _install(self, job: _Job, fn: int, ninsn: int) -> None:
        page = job.phys >> 12
        if self.page_gen[page] != job.gen or not self.code_pages[page]:
            self.stats["stale"] += 1
            return
        ent = self.table[job.slot + self._way_for(job)]
        ent["eip"], ent["phys"], ent["mode"] = job.eip, job.phys, int(job.code32)
        ent["gen"], ent["ninsn"], ent["fn"] = job.gen, ninsn, fn
        self.hot[job.slot] = 0
        self.stats["installed"] += 1
        if self.stats["installed"] > self.max_blocks * (self.stats["flushes"] + 1):
            log.info("pyv86 JIT: code cache full (%d blocks); starting over", self.max_blocks)
            self.flush()

    def _way_for(self, job: _Job) -> int:
        """The way of the job's set its translation goes to: the one that holds this block
        already, else an empty one, else one whose translation is stale; else the first
        way's translation moves to the second (the older one there is dropped)."""
        ways = self.table[job.slot:job.slot + S.JIT_WAYS]
        for w in range(S.JIT_WAYS):
            ent = ways[w]
            if (ent["fn"] == 0 or (ent["eip"] == job.eip and ent["phys"] == job.phys
                                   and ent["mode"] == int(job.code32))):
                return w
        for w in range(S.JIT_WAYS):
            if ways[w]["gen"] != self.page_gen[int(ways[w]["phys"]) >> 12]:
                return w
        ways[1:] = ways[:-1].copy()
        self.stats["evicted"] += 1
        return 0

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Wait until every submitted batch is linked (tests, benchmarks)."""
        end = time.monotonic() + timeout
        while (self._inflight or self._backlog) and time.monotonic() < end:
            self._submit_next()
            if self._inflight:
                self._collect(block=True)

    def close(self) -> None:
        """Forget batches in flight (the shared compile process ends with this process)."""
        inst = _CompileProcess._instance
        if inst is not None:
            inst.forget(self._replies)
        self._inflight.clear()
        self._backlog = []

    def report(self) -> dict:
        st = self.cpu.state
        out = dict(self.stats)
        out["blocks_entered"] = self._banked[0] + int(st["jit_calls"])
        out["jit_instructions"] = self._banked[1] + int(st["jit_insns"])
        out["invalidations"] = int(self.page_gen.sum(dtype=np.uint64)) - self._flush_gens
        return out
