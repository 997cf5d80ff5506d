// Package logwriter gathers the log lines of concurrent goroutines into
// few writes: a Writer holds what its Handler's records append, and the
// first goroutine to find no write in progress writes everything held
// (its own line and whatever others added meanwhile) and goes on until
// nothing is left; the others only append and return. A busy server's
// lines reach the log in fewer write(2) calls, in the order they were
// logged, whole, and none is lost: no goroutine and no timer hold a line
// back, since someone is always writing while something is held. Two
// exceptions, asked for by the caller's context: Hold keeps a record
// until the caller releases it, and Lazy until the next write or at most
// a fixed short delay.
package logwriter
