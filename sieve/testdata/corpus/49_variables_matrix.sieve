require ["variables", "fileinto"];
set "a" "One";
set "A.B" "x";
set "empty" "";
fileinto "x01-${a}${A}${empty}${unknown}";
fileinto "x02-${ a}-${a }-${}-${-}-$${a}-${${a}}-${a";
set :lower :upperfirst "m" "hELLO wORLD";
fileinto "x03-${m}";
set :upper :lowerfirst "m" "hello";
fileinto "x04-${m}";
set :length "l" "${a}${a}";
fileinto "x05-${l}";
set :quotewildcard "q" "a*b?c\\d";
fileinto "x06-${q}";
set :length :quotewildcard "ql" "**";
fileinto "x07-${ql}";
set "t" text:
multi
line
.
;
if string :is "${t}" "multi${crlf}line" { fileinto "never"; }
if string :contains "${t}" "line" { fileinto "x08"; }
set "n" "${a}";
set "a" "Two";
fileinto "x09-${n}-${a}-${A}";
set "Mixed_Case1" "mc";
fileinto "x10-${mixed_case1}";
if string :is "" "" { fileinto "x11"; }
if string :is ["", "${a}"] "two" { fileinto "x12"; }
if string :contains "${a}" "" { fileinto "x13"; }
