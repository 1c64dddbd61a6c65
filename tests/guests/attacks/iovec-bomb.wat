;; An attacker: `fd_write` to stderr with 4,000 iovecs that all cover the same 1 MiB of memory, 20 times over.
;; A host that concatenated them would allocate 4 GB per call; wasmdyno moves at most 1 MiB per call and says so
;; with a short count. Exits 0 when every call was short (what a bounded host does), 1 otherwise.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 16)
  (func (export "_start")
    (local $i i32)
    (local $round i32)
    ;; 4,000 iovecs at 65536..97536, each (buf 0, len 1 MiB).
    (block $built
      (loop $next
        (br_if $built (i32.ge_u (local.get $i) (i32.const 4000)))
        (i32.store (i32.add (i32.const 65536) (i32.mul (local.get $i) (i32.const 8))) (i32.const 0))
        (i32.store (i32.add (i32.const 65540) (i32.mul (local.get $i) (i32.const 8))) (i32.const 1048576))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (block $done
      (loop $again
        (br_if $done (i32.ge_u (local.get $round) (i32.const 20)))
        (drop (call $fd_write (i32.const 2) (i32.const 65536) (i32.const 4000) (i32.const 128)))
        ;; nwritten at 128: a bounded host wrote less than the 4,000 MiB asked for.
        (if (i32.ge_u (i32.load (i32.const 128)) (i32.const 1073741824))
          (then (call $proc_exit (i32.const 1))))
        (local.set $round (i32.add (local.get $round) (i32.const 1)))
        (br $again)))
    (call $proc_exit (i32.const 0))))
