//go:build race

package imap

// raceEnabled: the race detector inflates memory figures.
const raceEnabled = true
