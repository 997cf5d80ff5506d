require ["date", "relational", "fileinto"];
if date :value "ge" "date" "date" "2026-12-05" { fileinto "recent"; }
if date :value "lt" "date" "hour" "12" { fileinto "morning"; }
if date :count "eq" "date" "year" "1" { fileinto "one-date"; }
if date :count "eq" "date" "year" "2" { fileinto "two-dates"; }
if date :is "x-nothere" "year" "2026" { fileinto "nothere"; }
if date :is "subject" "year" "2026" { fileinto "bad-date"; }
if not date :is "date" "year" "1999" { fileinto "not-1999"; }
