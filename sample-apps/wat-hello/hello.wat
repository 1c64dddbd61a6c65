;; The smallest wasmdyno app: a WASI preview-1 command written in WebAssembly text.
;; The wasm buildpack compiles it to hello.wasm; the Procfile may keep naming hello.wat.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "Hello from WebAssembly text on wasmdyno!\n")
  (func (export "_start")
    ;; one iovec at 0: { ptr = 16, len = 41 }; bytes written land at 8
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 41))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
