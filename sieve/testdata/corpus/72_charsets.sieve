require ["fileinto", "variables"];
if header :contains "from" "Jörg Müller" { fileinto "h01"; }
if address :is "from" "joerg@example.de" { fileinto "h02"; }
if header :contains "to" "日本語" { fileinto "h03"; }
if header :is "subject" "café and crème brûlée" { fileinto "h04"; }
if header :contains "subject" "crème" { fileinto "h05"; }
if header :contains "x-unknown-charset" "abc" { fileinto "h06"; }
if header :contains "x-unknown-charset" "tail" { fileinto "h07"; }
if header :contains "x-broken" "unterminated" { fileinto "h08"; }
if header :contains "x-raw-utf8" "café" { fileinto "h09"; }
if header :contains "x-raw-latin1" "cr" { fileinto "h10"; }
if header :is "x-mixed" "plain ✓done" { fileinto "h11"; }
if header :contains "x-mixed" "✓" { fileinto "h12"; }
if header :is "x-folded" "first part  second part	third" { fileinto "h13"; }
if header :is "x-folded" "first part second part third" { fileinto "h14"; }
if header :matches "x-folded" "first*third" { fileinto "h15-${1}"; }
if header :is "x-underscore" "a b c" { fileinto "h16"; }
if header :is "x-lower-b" "é" { fileinto "h17"; }
if header :is :comparator "i;octet" "subject" "CAFÉ AND CRÈME BRÛLÉE" { fileinto "h19"; }
if header :is "subject" "CAFé AND CRèME BRûLéE" { fileinto "h20"; }
if header :matches "subject" "caf?? *" { fileinto "h21-${3}"; }
