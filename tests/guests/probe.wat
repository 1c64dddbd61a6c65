;; A WASI preview-1 command for tests: `probe.wasm <verb> [arg]`
;;   args          print each argv entry on its own line
;;   env           print each environment entry on its own line
;;   cat           copy stdin to stdout
;;   exit N        proc_exit(N)
;;   stderr TEXT   write TEXT and a newline to stderr
;;   trap          execute `unreachable`
;;   spin          loop forever
;;   grow          grow memory 16 MiB at a time until it fails; exit with the number of steps that worked
;;   flood N       write N lines to stdout as fast as it can
;;   stain         exit 1 unless memory is as a fresh instance has it (the data segment as written, zeros past
;;                 it, zeros in memory grown by a page), else change all three and exit 0: a second run in a
;;                 reused slot shows whether the slot was reset
(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 4)

  ;; 0..16 iovec and result slots; 16..32 sizes; 512.. literals; 4096 argv; 8192 argv buf;
  ;; 16384 environ; 32768 environ buf; 65536.. stdin buffer (64 KiB)
  (data (i32.const 512) "args\00")
  (data (i32.const 520) "env\00")
  (data (i32.const 528) "cat\00")
  (data (i32.const 536) "exit\00")
  (data (i32.const 544) "trap\00")
  (data (i32.const 552) "stderr\00")
  (data (i32.const 560) "\n")
  (data (i32.const 568) "spin\00")
  (data (i32.const 576) "grow\00")
  (data (i32.const 584) "flood\00")
  (data (i32.const 592) "stain\00")
  (data (i32.const 688) "flood line\n")
  (data (i32.const 600) "usage: probe.wasm args|env|cat|exit N|stderr TEXT|trap|spin|grow|flood N|stain\n")

  (func $write (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))

  (func $strlen (param $p i32) (result i32)
    (local $n i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $n))

  (func $streq (param $a i32) (param $b i32) (result i32)
    (local $ca i32)
    (loop $next
      (local.set $ca (i32.load8_u (local.get $a)))
      (if (i32.ne (local.get $ca) (i32.load8_u (local.get $b))) (then (return (i32.const 0))))
      (if (i32.eqz (local.get $ca)) (then (return (i32.const 1))))
      (local.set $a (i32.add (local.get $a) (i32.const 1)))
      (local.set $b (i32.add (local.get $b) (i32.const 1)))
      (br $next))
    (i32.const 0))

  (func $puts (param $fd i32) (param $s i32)
    (call $write (local.get $fd) (local.get $s) (call $strlen (local.get $s)))
    (call $write (local.get $fd) (i32.const 560) (i32.const 1)))

  (func $print_list (param $count i32) (param $ptrs i32)
    (local $i i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
        (call $puts (i32.const 1) (i32.load (i32.add (local.get $ptrs) (i32.mul (local.get $i) (i32.const 4)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next))))

  (func $atoi (param $p i32) (result i32)
    (local $n i32) (local $c i32)
    (block $done
      (loop $next
        (local.set $c (i32.load8_u (local.get $p)))
        (br_if $done (i32.lt_u (local.get $c) (i32.const 48)))
        (br_if $done (i32.gt_u (local.get $c) (i32.const 57)))
        (local.set $n (i32.add (i32.mul (local.get $n) (i32.const 10)) (i32.sub (local.get $c) (i32.const 48))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))
    (local.get $n))

  (func (export "_start")
    (local $argc i32) (local $verb i32) (local $n i32)
    (drop (call $args_sizes_get (i32.const 16) (i32.const 20)))
    (drop (call $args_get (i32.const 4096) (i32.const 8192)))
    (local.set $argc (i32.load (i32.const 16)))
    (if (i32.lt_u (local.get $argc) (i32.const 2))
      (then
        (if (call $streq (local.get $verb) (i32.const 592))
      (then
        (if (i32.load (i32.const 200000)) (then (call $proc_exit (i32.const 1))))
        (if (i32.ne (i32.load8_u (i32.const 512)) (i32.const 97)) (then (call $proc_exit (i32.const 1))))
        ;; The first byte past the old end, plus 100.
        (local.set $n (i32.add (i32.mul (memory.grow (i32.const 1)) (i32.const 65536)) (i32.const 100)))
        (if (i32.load (local.get $n)) (then (call $proc_exit (i32.const 1))))
        (i32.store (i32.const 200000) (i32.const 0x5741534d))
        (i32.store8 (i32.const 512) (i32.const 88))
        (i32.store (local.get $n) (i32.const 0x5741534d))
        (call $proc_exit (i32.const 0))))
    (call $write (i32.const 2) (i32.const 600) (i32.const 79))
        (call $proc_exit (i32.const 2))))
    (local.set $verb (i32.load (i32.const 4100)))

    (if (call $streq (local.get $verb) (i32.const 512))
      (then (call $print_list (local.get $argc) (i32.const 4096)) (return)))
    (if (call $streq (local.get $verb) (i32.const 520))
      (then
        (drop (call $environ_sizes_get (i32.const 24) (i32.const 28)))
        (drop (call $environ_get (i32.const 16384) (i32.const 32768)))
        (call $print_list (i32.load (i32.const 24)) (i32.const 16384))
        (return)))
    (if (call $streq (local.get $verb) (i32.const 528))
      (then
        (loop $more
          (i32.store (i32.const 0) (i32.const 65536))
          (i32.store (i32.const 4) (i32.const 65536))
          (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 12)))
          (local.set $n (i32.load (i32.const 12)))
          (if (i32.gt_u (local.get $n) (i32.const 0))
            (then
              (call $write (i32.const 1) (i32.const 65536) (local.get $n))
              (br $more))))
        (return)))
    (if (call $streq (local.get $verb) (i32.const 536))
      (then (call $proc_exit (call $atoi (i32.load (i32.const 4104))))))
    (if (call $streq (local.get $verb) (i32.const 552))
      (then (call $puts (i32.const 2) (i32.load (i32.const 4104))) (return)))
    (if (call $streq (local.get $verb) (i32.const 544))
      (then unreachable))
    (if (call $streq (local.get $verb) (i32.const 568))
      (then (loop $forever (br $forever))))
    (if (call $streq (local.get $verb) (i32.const 584))
      (then
        (local.set $n (call $atoi (i32.load (i32.const 4104))))
        (block $done
          (loop $more
            (br_if $done (i32.eqz (local.get $n)))
            (call $write (i32.const 1) (i32.const 688) (i32.const 11))
            (local.set $n (i32.sub (local.get $n) (i32.const 1)))
            (br $more)))
        (return)))
    (if (call $streq (local.get $verb) (i32.const 576))
      (then
        (block $full
          (loop $more
            (br_if $full (i32.eq (memory.grow (i32.const 256)) (i32.const -1)))
            (local.set $n (i32.add (local.get $n) (i32.const 1)))
            (br $more)))
        (call $proc_exit (local.get $n))))
    (if (call $streq (local.get $verb) (i32.const 592))
      (then
        (if (i32.load (i32.const 200000)) (then (call $proc_exit (i32.const 1))))
        (if (i32.ne (i32.load8_u (i32.const 512)) (i32.const 97)) (then (call $proc_exit (i32.const 1))))
        ;; The first byte past the old end, plus 100.
        (local.set $n (i32.add (i32.mul (memory.grow (i32.const 1)) (i32.const 65536)) (i32.const 100)))
        (if (i32.load (local.get $n)) (then (call $proc_exit (i32.const 1))))
        (i32.store (i32.const 200000) (i32.const 0x5741534d))
        (i32.store8 (i32.const 512) (i32.const 88))
        (i32.store (local.get $n) (i32.const 0x5741534d))
        (call $proc_exit (i32.const 0))))
    (call $write (i32.const 2) (i32.const 600) (i32.const 79))
    (call $proc_exit (i32.const 2)))
)
