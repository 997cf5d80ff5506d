require "fileinto";
if header :matches "comment" "" { fileinto "m01"; }
if header :matches "comment" "*" { fileinto "m02"; }
if header :matches "comment" "?" { fileinto "m03"; }
if address :matches "from" "*@ma*l*examp*.com" { fileinto "m04"; }
if address :matches "from" "*@m*lex*mple.com" { fileinto "m05"; }
if address :matches "from" "jane+sieve@mail.*" { fileinto "m06"; }
if address :matches "from" "*+sieve@mail.example.com" { fileinto "m07"; }
if address :matches "from" "jane+sieve?mail.example.com" { fileinto "m08"; }
if address :matches "from" "?ane+sieve@mail.example.co?" { fileinto "m09"; }
if address :matches "from" "?a?e?sieve?ma?l.exampl?.co?" { fileinto "m10"; }
if header :matches "x-marks" "4444\\?\\?\\?z" { fileinto "m11"; }
if header :matches "x-marks" "4444\\?\\?\\?" { fileinto "m12"; }
if header :matches "x-marks" "44*\\?\\??" { fileinto "m13"; }
if header :matches "x-marks" "*\\?\\?\\?z" { fileinto "m14"; }
if header :matches "x-stars" "\\*\\*\\*\\**" { fileinto "m15"; }
if header :matches "x-stars" "\\*\\*\\*\\*\\*\\*\\*\\*" { fileinto "m16"; }
if header :matches "x-stars" "\\*\\*\\*\\*\\*\\*\\*\\*\\*" { fileinto "m17"; }
if header :matches "x-slash" "*\\\\" { fileinto "m18"; }
if header :matches "subject" "*money*!" { fileinto "m20"; }
if header :matches "subject" "*MONEY*" { fileinto "m21"; }
if header :matches :comparator "i;octet" "subject" "*MONEY*" { fileinto "m22"; }
if header :matches "x-words" "?*frop*" { fileinto "m23"; }
if header :matches "x-words" "*.frop*frop." { fileinto "m24"; }
if header :matches "x-nothere" "*" { fileinto "m25"; }
if header :matches ["to", "cc"] "*@team.*" { fileinto "m26"; }
if address :matches :domain ["to", "cc"] "*.example.org" { fileinto "m27"; }
