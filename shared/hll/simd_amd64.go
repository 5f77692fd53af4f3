package hll

import "golang.org/x/sys/cpu"

// useSIMD: the dense merge and its check take 128 registers a step with
// AVX2 (simd_amd64.s). A var, so tests run the word loops here too.
var useSIMD = cpu.X86.HasAVX2

// maxSIMD sets dst[i] = max(dst[i], src[i]) for i < n, n a multiple of 128.
//
//go:noescape
func maxSIMD(dst, src *byte, n int)

// maxRegSIMD is the largest of p[:n], n a multiple of 128.
//
//go:noescape
func maxRegSIMD(p *byte, n int) uint8
