if size :over 1M { discard; }
if size :under 0 { discard; }
