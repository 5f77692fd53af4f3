//go:build !amd64

package hll

const useSIMD = false

func maxSIMD(dst, src *byte, n int)   { panic("hll: no SIMD on this architecture") }
func maxRegSIMD(p *byte, n int) uint8 { panic("hll: no SIMD on this architecture") }
