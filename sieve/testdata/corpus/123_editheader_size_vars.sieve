require ["editheader", "fileinto", "variables", "relational", "comparator-i;ascii-numeric"];
deleteheader :matches "x-tag" ["*a", "b*"];
fileinto "tag-${1}";
addheader "X-Padding" "0123456789012345678901234567890123456789";
addheader :last "X-More" "folded value that is long enough to be folded somewhere around the seventy-eighth column";
deleteheader "x-count";
if size :over 300 { fileinto "over-300"; }
if size :over 350 { fileinto "over-350"; }
if size :over 400 { fileinto "over-400"; }
if size :over 450 { fileinto "over-450"; }
if size :over 500 { fileinto "over-500"; }
