;; An attacker on a web dyno's listener (fd 4): for each connection, it reads with `sock_recv(RECV_WAITALL)` into
;; 4,000 iovecs that all cover the same 64 KiB page, so each call claims 250 MiB, until 8 MiB of the client's
;; request is in; then it answers `ok` and reads what is left until the router closes. A host that honoured the
;; claims would buffer 250 MiB per call; wasmdyno's moves at most 1 MiB per call.
(module
  (import "wasi_snapshot_preview1" "sock_accept" (func $accept (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_recv" (func $recv (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_send" (func $send (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_set_flags" (func $set_flags (param i32 i32) (result i32)))
  (memory (export "memory") 3)
  ;; 0..16 results; 64.. the answer; 1024.. 4,000 iovecs (32,000 bytes); 65536.. the page they all cover.
  (data (i32.const 64) "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
  (func $iovecs (param $len i32)
    (local $i i32)
    (loop $more
      (i32.store (i32.add (i32.const 1024) (i32.mul (local.get $i) (i32.const 8))) (i32.const 65536))
      (i32.store (i32.add (i32.const 1028) (i32.mul (local.get $i) (i32.const 8))) (local.get $len))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $more (i32.lt_u (local.get $i) (i32.const 4000)))))
  (func (export "_start")
    (local $conn i32)
    (local $got i32)
    ;; Blocking accepts.
    (drop (call $set_flags (i32.const 4) (i32.const 0)))
    (loop $connections
      (if (i32.ne (call $accept (i32.const 4) (i32.const 0) (i32.const 0)) (i32.const 0))
        (then (return)))
      (local.set $conn (i32.load (i32.const 0)))
      (local.set $got (i32.const 0))
      (call $iovecs (i32.const 65536))
      ;; Read until the peer has sent 8 MiB (its head and body) or closes.
      (block $read
        (loop $more
          (br_if $read (i32.ne
            (call $recv (local.get $conn) (i32.const 1024) (i32.const 4000) (i32.const 2) (i32.const 8) (i32.const 12))
            (i32.const 0)))
          (br_if $read (i32.eqz (i32.load (i32.const 8))))
          (local.set $got (i32.add (local.get $got) (i32.load (i32.const 8))))
          (br_if $more (i32.lt_u (local.get $got) (i32.const 8388608)))))
      ;; The answer.
      (i32.store (i32.const 1024) (i32.const 64))
      (i32.store (i32.const 1028) (i32.const 59))
      (drop (call $send (local.get $conn) (i32.const 1024) (i32.const 1) (i32.const 0) (i32.const 8)))
      ;; The request's head counted towards the 8 MiB, so some of its body may still be on its way: read the rest
      ;; until the router closes its end (it has the answer), so that nothing it sends finds the dyno gone.
      (call $iovecs (i32.const 65536))
      (block $drained
        (loop $rest
          (br_if $drained (i32.ne
            (call $recv (local.get $conn) (i32.const 1024) (i32.const 4000) (i32.const 0) (i32.const 8) (i32.const 12))
            (i32.const 0)))
          (br_if $rest (i32.ne (i32.load (i32.const 8)) (i32.const 0)))))
      (drop (call $close (local.get $conn)))
      (br $connections))))
