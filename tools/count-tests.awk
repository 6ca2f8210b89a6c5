# Sums one meson testlog.txt into "passed failed skipped", counting every
# Criterion test (TAP line) on its own and a plain exit-status test as one.
function close_test() {
	if (name != "" && !tap) {
		if (result ~ /exit status 0$/) ok++
		else if (result ~ /exit status 77$|SKIP/) skip++
		else bad++
	}
	name = ""; tap = 0; result = ""
}
/^test: / { close_test(); name = $2 }
/^result: / { result = $0 }
/^ok( [0-9]+)? .*# [Ss][Kk][Ii][Pp]/ { tap = 1; skip++; next }
/^ok( [0-9]+)? / { tap = 1; ok++ }
/^not ok( [0-9]+)? / { tap = 1; bad++ }
END { close_test(); print ok + 0, bad + 0, skip + 0 }
