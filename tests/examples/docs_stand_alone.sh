# The project's documentation stands alone: no Markdown page of the tree
# sends the reader to design files kept outside the repository, and no
# build output (luac.out) is committed. Run from the repository root:
#   sh tests/examples/docs_stand_alone.sh [BIN]   (BIN is not used)
. tests/examples/check.inc

pages=$(find . -name '*.md' -not -path './build*' -not -path './.git/*' | sort)
check "docs name no outside design file" "" \
  grep -nE '/work/|shared/design|(API|ARCHITECTURE|SEMANTICS|STYLE)\.md' $pages
n=0
for f in $pages; do
  case $f in ./README.md|./engine/README.md|./lua/README.md) n=$((n + 1)) ;; esac
done
check "the three reference pages are among them" "3" echo "$n"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  check "luac.out is not tracked" "" git ls-files luac.out
fi
check "luac.out is ignored" "luac.out" sh -c "grep -x 'luac.out' .gitignore"
finish
