# trident-bench-trace-spans: the trace recorder's CPU cost per event (bench/trace_overhead.sh).
add_executable(trident-bench-trace-spans ${CMAKE_CURRENT_SOURCE_DIR}/trace_overhead_spans.cpp)
target_link_libraries(trident-bench-trace-spans PRIVATE trident_trace trident_warnings)
