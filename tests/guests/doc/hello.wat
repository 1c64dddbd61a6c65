;; The smallest command: `_start` returns at once (exit status 0). Used by doc examples (hello.wasm is this,
;; compiled; a unit test keeps the two in step).
(module
  (func (export "_start")))
