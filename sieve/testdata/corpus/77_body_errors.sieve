require ["body"];
if body :raw :text "x" { discard; }
