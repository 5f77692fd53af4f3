package instant

import (
	"testing"
	"time"
)

func TestBounds(t *testing.T) {
	far, _ := time.Parse(time.RFC3339, "9999-12-31T23:00:00-23:00") // year 10000 in UTC
	for _, c := range []struct {
		t  time.Time
		ok bool
	}{
		{Min, true}, {Min.Add(-time.Nanosecond), false}, {Max, false}, {Max.Add(-time.Nanosecond), true},
		{far, false}, {time.Time{}, false}, {time.Now(), true},
	} {
		if Valid(c.t) != c.ok || (Check(c.t) == nil) != c.ok {
			t.Errorf("%v: valid=%v, want %v", c.t, Valid(c.t), c.ok)
		}
	}
}
