package apierr

import (
	"fmt"
	"net/http"
	"testing"
)

func TestEveryCodeHasAnErrorStatus(t *testing.T) {
	for c, s := range statuses {
		if s < 400 || s > 599 || http.StatusText(s) == "" {
			t.Errorf("%s maps to %d", c, s)
		}
	}
	if Code("nope").Status() != 500 || Code("nope").Known() {
		t.Fatal("unknown code")
	}
}

func TestFrom(t *testing.T) {
	e := New(PartnerNotFound, "partner %s", "x")
	wrapped := fmt.Errorf("ctx: %w", e)
	if From(wrapped) != e || !Is(wrapped, PartnerNotFound) || Is(wrapped, NotFound) {
		t.Fatal("wrapped error not found")
	}
	in := From(fmt.Errorf("db password=hunter2 failed"))
	if in.Code != Internal || in.Message != "internal error" {
		t.Fatalf("internal error leaks: %+v", in)
	}
}
