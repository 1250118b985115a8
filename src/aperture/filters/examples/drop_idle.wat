;; Drops idle-CPU samples (pid 0 or a comm starting "swapper"): the ABI by hand.
;; The host compiles .wat files at load; offsets are those of docs/filters.md.
(module
  (memory (export "memory") 1)
  (global $top (mut i32) (i32.const 1024))
  (data (i32.const 16) "swapper")

  ;; bump allocator: each batch runs in a fresh instance
  (func $alloc (export "aperture_alloc") (param $size i32) (result i32)
    (local $ptr i32) (local $end i32) (local $have i32)
    (local.set $ptr (i32.and (i32.add (global.get $top) (i32.const 7)) (i32.const -8)))
    (local.set $end (i32.add (local.get $ptr) (local.get $size)))
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq
              (memory.grow (i32.div_u (i32.add (i32.sub (local.get $end) (local.get $have))
                                               (i32.const 65535)) (i32.const 65536)))
              (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $top (local.get $end))
    (local.get $ptr))

  ;; 1 when string $index of the batch at $b starts with "swapper"
  (func $is_swapper (param $b i32) (param $index i32) (result i32)
    (local $entry i32) (local $p i32) (local $i i32)
    ;; entry = b + strings_offset + 8 * index
    (local.set $entry (i32.add (i32.add (local.get $b) (i32.load offset=16 (local.get $b)))
                               (i32.shl (local.get $index) (i32.const 3))))
    (if (i32.lt_u (i32.load offset=4 (local.get $entry)) (i32.const 7))
      (then (return (i32.const 0))))
    (local.set $p (i32.add (local.get $b) (i32.load (local.get $entry))))
    (block $done
      (loop $next
        (br_if $done (i32.eq (local.get $i) (i32.const 7)))
        (if (i32.ne (i32.load8_u (i32.add (local.get $p) (local.get $i)))
                    (i32.load8_u offset=16 (local.get $i)))
          (then (return (i32.const 0))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 1))

  (func (export "aperture_filter") (param $b i32) (param $len i32) (result i32)
    (local $n i32) (local $out i32) (local $i i32) (local $rec i32)
    (local.set $n (i32.load offset=8 (local.get $b)))
    (local.set $out (call $alloc (i32.add (local.get $n) (i32.const 1))))
    (if (i32.eqz (local.get $out)) (then unreachable))
    (local.set $rec (i32.add (local.get $b) (i32.load offset=20 (local.get $b))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        ;; record: pid at +4, comm at +12
        (i32.store8 (i32.add (local.get $out) (local.get $i))
          (i32.eqz (i32.or (i32.eqz (i32.load offset=4 (local.get $rec)))
                           (call $is_swapper (local.get $b) (i32.load offset=12 (local.get $rec))))))
        (local.set $rec (i32.add (local.get $rec) (i32.const 32)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.get $out)))
