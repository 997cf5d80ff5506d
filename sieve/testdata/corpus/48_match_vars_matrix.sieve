require ["variables", "fileinto"];
if header :matches "x-words" "?*frop*" { fileinto "v01-${1}|${2}|${3}|${4}"; }
if header :matches "subject" "* * *" { fileinto "v02-${1}|${2}|${3}"; }
if address :matches ["to", "cc"] ["*@**.com", "kim@*"] { fileinto "v03-${0}|${1}|${2}"; }
if header :matches "list-id" "*<*@*" { fileinto "v04-${2}"; }
if header :matches "list-id" "*<*.lists.*>" { fileinto "v05-${1}|${2}|${3}"; }
if string :matches "frop" "??op" { fileinto "v06-${0}:${1}:${2}:${3}:"; }
if string :matches "frop" "fr??" { fileinto "v07-${0}:${1}:${2}:${3}:"; }
if string :matches "klopfropstroptop" "*fr??*top" { fileinto "v08-${1}:${2}:${3}:${4}:${5}"; }
if string :matches "zero:one:zero|three;one;zero/five" "*one?zero?five" { fileinto "v09-${1}${2}${3}"; }
if string :matches "abc" "nomatch*" { fileinto "never"; }
fileinto "v10-${1}-${0001}-${9}-${10}";
if string :matches "The quick brown fox" "T?? ????? ????? ?o?" { fileinto "v11-${1}${2}${14}${15}${16}"; }
if anyof (string :matches "a b" "? ?", string :matches "c d" "? ?") { fileinto "v12-${1}${2}"; }
