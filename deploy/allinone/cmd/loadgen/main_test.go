package main

import "testing"

func TestBounds(t *testing.T) {
	if err := run("http://127.0.0.1:1/api/v1", "k", "", "web", 0, 0, 0); err == nil {
		t.Error("concurrency 0 accepted")
	}
	if err := run("http://10.0.0.1:8080/api/v1", "k", "", "web", 1, 1, 0); err == nil {
		t.Error("a non-loopback target accepted")
	}
}
