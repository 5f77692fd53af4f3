#include "textflag.h"

// func maxSIMD(dst, src *byte, n int)
TEXT ·maxSIMD(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $7, CX
	JZ   maxdone

maxloop:
	VMOVDQU 0(SI), Y0
	VMOVDQU 32(SI), Y1
	VMOVDQU 64(SI), Y2
	VMOVDQU 96(SI), Y3
	VPMAXUB 0(DI), Y0, Y0
	VPMAXUB 32(DI), Y1, Y1
	VPMAXUB 64(DI), Y2, Y2
	VPMAXUB 96(DI), Y3, Y3
	VMOVDQU Y0, 0(DI)
	VMOVDQU Y1, 32(DI)
	VMOVDQU Y2, 64(DI)
	VMOVDQU Y3, 96(DI)
	ADDQ    $128, SI
	ADDQ    $128, DI
	DECQ    CX
	JNZ     maxloop
	VZEROUPPER

maxdone:
	RET

// func maxRegSIMD(p *byte, n int) uint8
TEXT ·maxRegSIMD(SB), NOSPLIT, $0-17
	MOVQ p+0(FP), SI
	MOVQ n+8(FP), CX
	XORQ AX, AX
	SHRQ $7, CX
	JZ   regdone
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
	VPXOR Y2, Y2, Y2
	VPXOR Y3, Y3, Y3

regloop:
	VPMAXUB 0(SI), Y0, Y0
	VPMAXUB 32(SI), Y1, Y1
	VPMAXUB 64(SI), Y2, Y2
	VPMAXUB 96(SI), Y3, Y3
	ADDQ    $128, SI
	DECQ    CX
	JNZ     regloop

	// Fold the four, then the 32 bytes of one, to the largest byte.
	VPMAXUB      Y1, Y0, Y0
	VPMAXUB      Y3, Y2, Y2
	VPMAXUB      Y2, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPMAXUB      X1, X0, X0
	VPSRLDQ      $8, X0, X1
	VPMAXUB      X1, X0, X0
	VPSRLDQ      $4, X0, X1
	VPMAXUB      X1, X0, X0
	VPSRLDQ      $2, X0, X1
	VPMAXUB      X1, X0, X0
	VPSRLDQ      $1, X0, X1
	VPMAXUB      X1, X0, X0
	VMOVQ        X0, AX
	VZEROUPPER

regdone:
	MOVB AL, ret+16(FP)
	RET
