package main

import (
	"strings"
	"testing"
)

// The help lists every queue command.
func TestHelpQueue(t *testing.T) {
	t.Parallel()
	if _, _, help := runCmd(t, "", "help"); !strings.Contains(help, "list, show, flush, delete, hold or release queued mail") {
		t.Errorf("help:\n%s", help)
	}
}
