;; Test guest (huge tables): a WASI preview-1 command module declaring a table of 100 million
;; elements (800 MB of references on a 64-bit host) before running any code. Built by build.sh
;; with `wasm-tools parse`.
(module
  (table 100000000 funcref)
  (memory (export "memory") 1)
  (func (export "_start")))
