package queue

import "container/heap"

// schedule is a min-heap of idle entries by due time, so that the runner
// finds due work without scanning a queue of many thousand messages.
// Guarded by Queue.mu.
type schedule struct{ h entryHeap }

func (s *schedule) push(e *entry)   { heap.Push(&s.h, e) }
func (s *schedule) fix(e *entry)    { heap.Fix(&s.h, e.index) }
func (s *schedule) remove(e *entry) { heap.Remove(&s.h, e.index) }

// peek returns the entry due first, or nil.
func (s *schedule) peek() *entry {
	if len(s.h) == 0 {
		return nil
	}
	return s.h[0]
}

func (s *schedule) pop() *entry { return heap.Pop(&s.h).(*entry) }

type entryHeap []*entry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *entryHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*h = old[:len(old)-1]
	return e
}
