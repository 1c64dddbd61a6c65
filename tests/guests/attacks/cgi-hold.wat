;; A CGI command that holds what it takes: it grows its memory by 300 MiB (more than half of a standard-1x quota),
;; answers at once with `grew=1` (or `grew=0` when the quota refused), then keeps running for two seconds before it
;; writes `done`. Two of its runs at once cannot both grow when a dyno's runs share one quota; and a run holds its
;; place among the dyno's concurrent runs until it ends, not until its head is out.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "Content-Type: text/plain\r\n\r\ngrew=0\n")
  (data (i32.const 48) "done\n")
  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 64) (local.get $ptr))
    (i32.store (i32.const 68) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 64) (i32.const 1) (i32.const 72))))
  (func (export "_start")
    ;; 4,800 pages of 64 KiB: 300 MiB.
    (if (i32.ne (memory.grow (i32.const 4800)) (i32.const -1))
      (then (i32.store8 (i32.const 33) (i32.const 49))))
    (call $write (i32.const 0) (i32.const 35))
    ;; One clock subscription at 256: monotonic, relative, two seconds; the event at 320, its count at 360.
    (i64.store (i32.const 256) (i64.const 0))
    (i32.store8 (i32.const 264) (i32.const 0))
    (i32.store (i32.const 272) (i32.const 1))
    (i64.store (i32.const 280) (i64.const 2000000000))
    (i64.store (i32.const 288) (i64.const 0))
    (i32.store16 (i32.const 296) (i32.const 0))
    (drop (call $poll_oneoff (i32.const 256) (i32.const 320) (i32.const 1) (i32.const 360)))
    (call $write (i32.const 48) (i32.const 5))))
