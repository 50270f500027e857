;; Test guest (huge tables): a WASI preview-1 command module that grows its table by 65,536
;; elements at a time, forever. `table.grow` answers -1 once a limit refuses the growth; the
;; loop goes on regardless. Built by build.sh with `wasm-tools parse`.
(module
  (table $t 1 funcref)
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $grow
      (drop (table.grow $t (ref.null func) (i32.const 65536)))
      (br $grow))))
