from t2ibench.cli import main
import sys
sys.exit(main())
