;; An attacker: a CGI command that answers with 1 GiB of body as fast as it can, in 64 KiB writes. Against a
;; client that reads slowly, wasmdyno's server must stay flat: the command's writes wait for the client. A write
;; that fails (the client went away: a broken pipe) ends it with status 3.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 2)
  (data (i32.const 0) "Content-Type: text/plain\r\n\r\n")
  (func $write (param $ptr i32) (param $len i32) (result i32)
    (i32.store (i32.const 64) (local.get $ptr))
    (i32.store (i32.const 68) (local.get $len))
    (call $fd_write (i32.const 1) (i32.const 64) (i32.const 1) (i32.const 72)))
  (func (export "_start")
    (local $left i32)
    (memory.fill (i32.const 65536) (i32.const 120) (i32.const 65536))
    (drop (call $write (i32.const 0) (i32.const 28)))
    ;; 16,384 writes of 64 KiB; a short write counts what it wrote.
    (local.set $left (i32.const 1073741824))
    (block $done
      (loop $more
        (br_if $done (i32.le_s (local.get $left) (i32.const 0)))
        (if (i32.ne (call $write (i32.const 65536) (i32.const 65536)) (i32.const 0))
          (then (call $proc_exit (i32.const 3))))
        (local.set $left (i32.sub (local.get $left) (i32.load (i32.const 72))))
        (br $more)))
    (call $proc_exit (i32.const 0))))
